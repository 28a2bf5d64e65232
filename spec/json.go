package spec

import (
	"bytes"
	"encoding/json"
	"reflect"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// v1Semantics makes the v2 decoder behave as encoding/json: field names
// matched without regard to case, unknown fields ignored, duplicate names and
// invalid UTF-8 accepted, and so on.
var v1Semantics = jsonv1.DefaultOptionsV1()

// Unmarshal decodes data into v with encoding/json's semantics, at about half
// the cost of encoding/json on a cold start.
//
// Every cubo-runc invocation decodes one config.json in a fresh process, and
// encoding/json builds, while decoding a type for the first time, the
// encoders of the type and every type under it (typeFields sets each field's
// encoder): for runtime-spec's Spec that is ~0.75 ms of a ~4 ms `start` and
// of the container init. The v2 engine (github.com/go-json-experiment/json,
// the mirror of Go 1.27's encoding/json/v2, which it aliases there) builds
// only what it decodes. Errors still come from encoding/json, whose messages
// and error types (*json.SyntaxError, *json.UnmarshalTypeError) callers and
// users know: on any failure the input is decoded again with it.
func Unmarshal(data []byte, v any) error {
	if err := jsonv2.Unmarshal(data, v, v1Semantics); err == nil {
		return nil
	}
	return unmarshalV1(data, v)
}

// unmarshalV1 decodes with encoding/json into a v reset to its zero value.
func unmarshalV1(data []byte, v any) error {
	reset(v)
	return json.Unmarshal(data, v)
}

// reset sets what v points to back to its zero value, so that nothing of a
// failed v2 attempt survives into the encoding/json one.
func reset(v any) {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv.Elem().SetZero()
	}
}

// decodeFirst decodes the first JSON value in data into v, ignoring anything
// after it as encoding/json's Decoder does, and returns that value's length.
// Errors are encoding/json's, as with Unmarshal.
func decodeFirst(data []byte, v any) (int64, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data), v1Semantics)
	if err := jsonv2.UnmarshalDecode(dec, v, v1Semantics); err == nil {
		return dec.InputOffset(), nil
	}
	reset(v)
	d := json.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(v); err != nil {
		return 0, err
	}
	return d.InputOffset(), nil
}

package container

import specs "github.com/opencontainers/runtime-spec/specs-go"

func i64(v int64) *int64 { return &v }

// allowedDevices are always allowed in the devices cgroup after the rules of
// config.json, as runc does: mknod of any node (creating it is harmless,
// using it is not), and read/write of the default devices and ptys. Without
// them the usual deny-all rule would break the container's own /dev.
var allowedDevices = []specs.LinuxDeviceCgroup{
	{Allow: true, Type: "c", Access: "m"},
	{Allow: true, Type: "b", Access: "m"},
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},    // null
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(8), Access: "rwm"},    // random
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(7), Access: "rwm"},    // full
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(0), Access: "rwm"},    // tty
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(5), Access: "rwm"},    // zero
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "rwm"},    // urandom
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(1), Access: "rwm"},    // console
	{Allow: true, Type: "c", Major: i64(136), Minor: nil, Access: "rwm"},     // pts
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(2), Access: "rwm"},    // ptmx
	{Allow: true, Type: "c", Major: i64(10), Minor: i64(200), Access: "rwm"}, // tun
}

// effectiveResources returns the resources to apply: config.json's, with
// the device rules extended by the default devices. Nodes listed in
// linux.devices are created but, as with runc, usable only if a rule of the
// config allows them.
func effectiveResources(s *specs.Spec) *specs.LinuxResources {
	if s.Linux == nil {
		return nil
	}
	var r specs.LinuxResources
	if s.Linux.Resources != nil {
		r = *s.Linux.Resources
	}
	devs := make([]specs.LinuxDeviceCgroup, 0, len(r.Devices)+len(allowedDevices)+len(s.Linux.Devices))
	devs = append(devs, r.Devices...)
	if len(devs) == 0 {
		// No rules at all means "deny all but what is allowed below",
		// never "allow all" (runc's behaviour, and the safe one).
		devs = append(devs, specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"})
	}
	devs = append(devs, allowedDevices...)
	r.Devices = devs
	return &r
}

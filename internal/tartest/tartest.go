// Package tartest builds tar archives that archive/tar's Writer refuses to write, for
// the tests that attack cubo's archive and layer readers with them.
package tartest

import (
	"archive/tar"
	"fmt"
	"strconv"
)

// rawUstar is one ustar header block, for members tar.Writer refuses to write.
func rawUstar(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "14540000000\x00")
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func padBlock(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// SparseBomb is an archive of one PAX (GNU 1.0) sparse member claiming realsize bytes,
// all hole: a few kilobytes that archive/tar expands to realsize zeros.
func SparseBomb(name string, realsize int64) []byte {
	rec := func(k, v string) string {
		n := len(k) + len(v) + 3
		for {
			s := strconv.Itoa(n) + " " + k + "=" + v + "\n"
			if len(s) == n {
				return s
			}
			n = len(s)
		}
	}
	pax := rec("GNU.sparse.major", "1") + rec("GNU.sparse.minor", "0") + rec("GNU.sparse.name", name) +
		rec("GNU.sparse.realsize", strconv.FormatInt(realsize, 10))
	out := append(rawUstar("PaxHeaders.0/"+name, tar.TypeXHeader, int64(len(pax))), padBlock([]byte(pax))...)
	out = append(out, rawUstar("GNUSparseFile.0/"+name, tar.TypeReg, 512)...)
	out = append(out, padBlock([]byte("0\n"))...)
	return append(out, make([]byte, 1024)...)
}

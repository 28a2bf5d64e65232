package spec

import (
	"strings"

	"golang.org/x/sys/unix"
)

// MountOptions is what ParseMountOptions makes of a mount's "options" list: the flags for
// mount(2), the propagation changes to apply after it, the attributes for
// mount_setattr(2) with AT_RECURSIVE, and the filesystem-specific data string.
type MountOptions struct {
	// Flags are the MS_* flags to pass to mount(2).
	Flags uintptr
	// ClearedFlags are the MS_* flags the options turned off explicitly ("rw", "suid",
	// "atime"...). A bind remount must clear these, and keep the source's other locked
	// flags, or the kernel refuses it inside a user namespace.
	ClearedFlags uintptr
	// Propagation holds one MS_{SHARED,SLAVE,PRIVATE,UNBINDABLE}[|MS_REC] value per
	// propagation option, in the order given; each needs its own mount(2) call.
	Propagation []uintptr
	// RecAttrSet and RecAttrClr are MOUNT_ATTR_* values for mount_setattr(2) with
	// AT_RECURSIVE, from the "r"-prefixed options ("rro", "rnosuid"...).
	RecAttrSet, RecAttrClr uint64
	// Data joins, comma-separated and in order, the options that are none of the above
	// ("mode=755", "size=65536k"): the filesystem interprets them.
	Data string
	// IDMap is set by "idmap" and "ridmap": the mount is id-mapped with the mount's
	// uidMappings/gidMappings (or the container's).
	IDMap bool
	// RecursiveIDMap is set by "ridmap": the id mapping applies to submounts too.
	RecursiveIDMap bool
	// TmpCopyUp is set by "tmpcopyup": a tmpfs mounted over a directory of the rootfs gets
	// a copy of that directory's contents.
	TmpCopyUp bool
}

// mountFlags maps mount(2) options to a flag and whether the option clears it. "defaults"
// and the atime group follow mount(8): "atime" clears MS_NOATIME, and so on.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"defaults":      {false, 0},
	"rw":            {true, unix.MS_RDONLY},
	"ro":            {false, unix.MS_RDONLY},
	"suid":          {true, unix.MS_NOSUID},
	"nosuid":        {false, unix.MS_NOSUID},
	"dev":           {true, unix.MS_NODEV},
	"nodev":         {false, unix.MS_NODEV},
	"exec":          {true, unix.MS_NOEXEC},
	"noexec":        {false, unix.MS_NOEXEC},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"sync":          {false, unix.MS_SYNCHRONOUS},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"remount":       {false, unix.MS_REMOUNT},
	"nomand":        {true, unix.MS_MANDLOCK},
	"mand":          {false, unix.MS_MANDLOCK},
	"atime":         {true, unix.MS_NOATIME},
	"noatime":       {false, unix.MS_NOATIME},
	"diratime":      {true, unix.MS_NODIRATIME},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"norelatime":    {true, unix.MS_RELATIME},
	"relatime":      {false, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"noiversion":    {true, unix.MS_I_VERSION},
	"iversion":      {false, unix.MS_I_VERSION},
	"symfollow":     {true, unix.MS_NOSYMFOLLOW},
	"nosymfollow":   {false, unix.MS_NOSYMFOLLOW},
	"loud":          {true, unix.MS_SILENT},
	"silent":        {false, unix.MS_SILENT},
	"bind":          {false, unix.MS_BIND},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
}

// propagationFlags maps the propagation options to the mount(2) flags that apply them.
var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// recAttrFlags maps the recursive options to a MOUNT_ATTR_* bit and whether the option
// clears it. The atime modes are not in this table: see recAtime.
var recAttrFlags = map[string]struct {
	clear bool
	attr  uint64
}{
	"rro":          {false, unix.MOUNT_ATTR_RDONLY},
	"rrw":          {true, unix.MOUNT_ATTR_RDONLY},
	"rnosuid":      {false, unix.MOUNT_ATTR_NOSUID},
	"rsuid":        {true, unix.MOUNT_ATTR_NOSUID},
	"rnodev":       {false, unix.MOUNT_ATTR_NODEV},
	"rdev":         {true, unix.MOUNT_ATTR_NODEV},
	"rnoexec":      {false, unix.MOUNT_ATTR_NOEXEC},
	"rexec":        {true, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime":  {false, unix.MOUNT_ATTR_NODIRATIME},
	"rdiratime":    {true, unix.MOUNT_ATTR_NODIRATIME},
	"rnosymfollow": {false, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"rsymfollow":   {true, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

// recAtime maps the recursive atime options to the atime mode they leave. The kernel keeps
// the atime mode as one field under MOUNT_ATTR__ATIME and refuses (EINVAL) an attr_clr that
// holds only part of that mask, so every atime option clears the whole field and sets a
// mode; the negative forms fall back to relatime, the kernel's default.
var recAtime = map[string]uint64{
	"rrelatime":      unix.MOUNT_ATTR_RELATIME,
	"rnorelatime":    unix.MOUNT_ATTR_RELATIME,
	"rnoatime":       unix.MOUNT_ATTR_NOATIME,
	"ratime":         unix.MOUNT_ATTR_RELATIME,
	"rstrictatime":   unix.MOUNT_ATTR_STRICTATIME,
	"rnostrictatime": unix.MOUNT_ATTR_RELATIME,
}

// ParseMountOptions sorts a mount's options into mount(2) flags, propagation changes,
// recursive mount attributes, Cubo's extensions (idmap, ridmap, tmpcopyup) and the data
// string. Later options win over earlier ones ("ro,rw" is read-write), as with mount(8).
// It never fails: unknown options are filesystem data, and the kernel judges them.
func ParseMountOptions(opts []string) MountOptions {
	var (
		m    MountOptions
		data []string
	)
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				m.Flags &^= f.flag
				m.ClearedFlags |= f.flag
			} else {
				m.Flags |= f.flag
				m.ClearedFlags &^= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			m.Propagation = append(m.Propagation, p)
			continue
		}
		if a, ok := recAttrFlags[o]; ok {
			if a.clear {
				m.RecAttrSet &^= a.attr
				m.RecAttrClr |= a.attr
			} else {
				m.RecAttrSet |= a.attr
				m.RecAttrClr &^= a.attr
			}
			continue
		}
		if mode, ok := recAtime[o]; ok {
			m.RecAttrClr |= unix.MOUNT_ATTR__ATIME
			m.RecAttrSet = m.RecAttrSet&^unix.MOUNT_ATTR__ATIME | mode
			continue
		}
		switch o {
		case "idmap":
			m.IDMap = true
		case "ridmap":
			m.IDMap = true
			m.RecursiveIDMap = true
		case "tmpcopyup":
			m.TmpCopyUp = true
		case "":
			// An empty option would put ",," into the data string.
		default:
			data = append(data, o)
		}
	}
	m.Data = strings.Join(data, ",")
	return m
}

// Package seccomp compiles OCI seccomp profiles (specs.LinuxSeccomp) into
// classic BPF and loads them with seccomp(2), without cgo or libseccomp.
//
// The generated filter follows what runc does with libseccomp on x86_64:
//
//   - The architecture is checked first. x86_64 is always included; x86 and
//     x32 are added when listed. Other architecture names known to the
//     runtime spec are accepted and ignored, since their syscalls can never
//     reach an x86_64 kernel. Any other audit architecture, and x32 syscall
//     numbers when x32 is not listed, get SECCOMP_RET_KILL_THREAD, which is
//     libseccomp's default bad-architecture action. Syscall number -1 (used
//     by tracers to skip a syscall) is not refused: like with runc, it
//     gets ENOSYS when the stub below applies to its ABI (x86, or x32 when
//     listed) and the default action otherwise.
//   - Syscall names the architecture does not have are skipped, like runc
//     does for names libseccomp cannot resolve.
//   - A rule whose action equals the default action is skipped (runc).
//   - For one syscall, an unconditional rule wins over every conditional one,
//     as in libseccomp; conditional rules are tried in profile order and the
//     first whose conditions all hold decides.
//   - Conditions of one rule are ANDed, except when two of them test the same
//     argument: then runc adds each condition as its own rule, so they are
//     ORed. Arguments are compared as unsigned 64-bit values on x86_64 and
//     as their low 32 bits on x86 and x32 (ILP32 ABIs, as in libseccomp). SCMP_CMP_MASKED_EQ tests
//     (arg & value) == (valueTwo & value).
//   - SCMP_ACT_ERRNO and SCMP_ACT_TRACE use errnoRet, or EPERM when unset;
//     the default action uses defaultErrnoRet the same way.
//   - Unless the default action is ALLOW, LOG or TRACE (or ERRNO(ENOSYS)),
//     syscall numbers above the highest one the profile names for an
//     architecture return ENOSYS, so that programs fall back from syscalls
//     newer than the profile instead of failing with EPERM (runc's patchbpf).
package seccomp

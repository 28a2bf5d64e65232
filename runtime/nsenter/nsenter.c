// nsenter joins existing namespaces before the Go runtime starts.
//
// setns(2) into a user namespace is refused to a multi-threaded process,
// and into a mount namespace to one that shares its fs_struct with other
// threads; the Go runtime starts threads before any Go code runs. So, as
// runc's nsexec does, a constructor does it while the process is still
// single-threaded. Unlike nsexec it never forks: the pid namespace is
// entered by the parent (setns on pid_for_children before clone), so the
// process that runs this is already the final one.
//
// Input, only in "cubo-runc init": _CUBO_NSENTER = "type=path;type=path..."
// with type in user, mnt, net, ipc, uts, cgroup, time; and optionally
// _CUBO_UNSHARE = decimal clone flags to unshare after joining (new
// namespaces of a container that also joins some by path).
// The first failure is kept for Go to report (cubo_nsenter_error).

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

#define MAX_NS 8

static char nsenter_err[512];

const char *cubo_nsenter_error(void) { return nsenter_err[0] ? nsenter_err : NULL; }

static int ns_flag(const char *type, size_t n)
{
	static const struct {
		const char *name;
		int flag;
	} table[] = {
		{"user", CLONE_NEWUSER}, {"mnt", CLONE_NEWNS},      {"net", CLONE_NEWNET},
		{"ipc", CLONE_NEWIPC},   {"uts", CLONE_NEWUTS},     {"cgroup", CLONE_NEWCGROUP},
		{"time", CLONE_NEWTIME},
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strlen(table[i].name) == n && strncmp(table[i].name, type, n) == 0)
			return table[i].flag;
	return 0;
}

static void fail(const char *what, const char *path, int err)
{
	if (!nsenter_err[0])
		snprintf(nsenter_err, sizeof(nsenter_err), "%s %s: %s", what, path, strerror(err));
}

__attribute__((constructor)) static void cubo_nsenter(void)
{
	const char *spec = getenv("_CUBO_NSENTER");
	const char *unshare_env = getenv("_CUBO_UNSHARE");
	struct {
		int fd;
		int flag;
		char path[256];
	} ns[MAX_NS];
	int n = 0;

	if ((spec == NULL || *spec == '\0') && unshare_env == NULL)
		return;

	// Open every path first: joining the mount namespace changes what
	// /proc/<pid>/ns/... resolves to.
	for (const char *p = spec; p && *p && n < MAX_NS;) {
		const char *end = strchr(p, ';');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq == NULL) {
			fail("parse", "_CUBO_NSENTER", EINVAL);
			return;
		}
		int flag = ns_flag(p, (size_t)(eq - p));
		size_t plen = len - (size_t)(eq - p) - 1;
		if (flag == 0 || plen == 0 || plen >= sizeof(ns[n].path)) {
			fail("parse", "_CUBO_NSENTER", EINVAL);
			return;
		}
		memcpy(ns[n].path, eq + 1, plen);
		ns[n].path[plen] = '\0';
		ns[n].flag = flag;
		ns[n].fd = open(ns[n].path, O_RDONLY | O_CLOEXEC);
		if (ns[n].fd < 0) {
			fail("open namespace", ns[n].path, errno);
			return;
		}
		n++;
		p = end ? end + 1 : NULL;
	}

	// The user namespace first: it grants the capabilities needed to
	// join the namespaces it owns.
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < n; i++) {
			if ((pass == 0) != (ns[i].flag == CLONE_NEWUSER))
				continue;
			if (setns(ns[i].fd, ns[i].flag) < 0) {
				fail("join namespace", ns[i].path, errno);
				return;
			}
			close(ns[i].fd);
		}
	}
	if (unshare_env != NULL) {
		int flags = atoi(unshare_env);
		if (flags != 0 && unshare(flags) < 0) {
			fail("unshare", "namespaces", errno);
			return;
		}
	}
}

// cubo_timerslack gives the Go runtime's threads of every cubo-runc process a
// coarse timer slack before the runtime creates them (they inherit it): while
// the process waits (for its init, for a container, in a blocking syscall) the
// runtime's sysmon thread polls with 20 us sleeps, 50-100 wake-ups per
// container in each of the runtime and the init; with 1 ms of slack the kernel
// lets each sleep run longer. Only timers are affected, and cubo-runc has none
// that need precision (hook timeouts are in seconds).
//
// The package init of runtime/nsenter puts the main thread back to the slack
// the caller gave it (a thread's default slack is its parent's at fork), and
// every process cubo-runc starts (the init, hooks, ps) is forked from a thread
// set back to that value (nsenter.RestoreTimerSlack), so nothing outside the
// runtime's own threads sees the change.
//
// Input: _CUBO_TIMERSLACK = slack in nanoseconds instead of 1 ms; 0 leaves the
// slack alone.
__attribute__((constructor)) static void cubo_timerslack(void)
{
	unsigned long ns = 1000000UL;
	const char *s = getenv("_CUBO_TIMERSLACK");
	if (s != NULL && *s != '\0')
		ns = strtoul(s, NULL, 10);
	if (ns > 0 && ns <= 100000000UL)
		prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0);
}

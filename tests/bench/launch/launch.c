/*
 * launch: the harness's measuring shim. It runs argv[1..] and reports on
 * fd 3 one line "WALL_US CPU_US MAXRSS_KIB WAITSTATUS", then exits with the
 * child's status.
 *
 * Why a separate, tiny, static C program: ru_maxrss of a process that was
 * forked (or vforked) and then exec'd includes the RSS of the parent's
 * memory at that moment (exec records the old mm's high-water mark), so a
 * runtime started directly by the Go harness would report at least the
 * harness's own ~10 MiB. Started from this shim, the floor is the shim's few
 * hundred KiB.
 *
 * It is a child subreaper: processes the runtime leaves behind and that
 * exit meanwhile are reaped here and counted. With CUBO_BENCH_WAITALL=1 it
 * also waits for every remaining descendant after the child exits (a
 * manager's monitor, podman's conmon) and the wall time covers them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long us(struct timeval tv) { return tv.tv_sec * 1000000L + tv.tv_usec; }

static long since_us(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000000L + (t1.tv_nsec - t0->tv_nsec) / 1000;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: launch PROGRAM [ARG...]\n");
		return 2;
	}
	const char *wa = getenv("CUBO_BENCH_WAITALL");
	int waitall = wa && strcmp(wa, "1") == 0;
	unsetenv("CUBO_BENCH_WAITALL");
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 127;
	}
	if (pid == 0) {
		close(3);
		execv(argv[1], argv + 1);
		fprintf(stderr, "exec %s: %s\n", argv[1], strerror(errno));
		_exit(127);
	}
	long cpu = 0, maxrss = 0, wall = 0;
	int status = 0, done = 0;
	for (;;) {
		struct rusage ru;
		int st;
		pid_t p = wait4(-1, &st, done ? WNOHANG : 0, &ru);
		if (p < 0 && errno == EINTR)
			continue;
		if (p <= 0)
			break;
		cpu += us(ru.ru_utime) + us(ru.ru_stime);
		if (ru.ru_maxrss > maxrss)
			maxrss = ru.ru_maxrss;
		if (p == pid) {
			status = st;
			wall = since_us(&t0);
			done = !waitall;
		}
	}
	if (waitall)
		wall = since_us(&t0);
	dprintf(3, "%ld %ld %ld %d\n", wall, cpu, maxrss, status);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

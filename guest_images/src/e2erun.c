/*
 * e2erun: run a user's workload in the guest and hold each of its processes at
 * its exit, before the kernel frees its memory, so the host can measure the
 * exit as a release (harness/scenarios/workload.py drives it).
 *
 *   e2erun [-m MIN_KIB] [-n] [-o LOG] CMD [ARG...]
 *
 * The workload (and every process it forks) is traced with ptrace. At
 * PTRACE_EVENT_EXIT a process has not yet dropped its memory (kernel/exit.c
 * do_exit: ptrace_event(PTRACE_EVENT_EXIT) comes before exit_mm). A process
 * whose anonymous RSS is at least MIN_KIB (default 16384) is held there:
 *
 *   exit pid=P status=S rss_kib=R comm=NAME     then one line on stdin: "go" (or "kill")
 *   gone pid=P                                  once P is reaped: its memory is back in the guest
 *
 * Smaller exits continue at once. Other lines:
 *   started pid=P        the workload's first process (the one CMD runs as)
 *   done status=S        nothing of the workload is left; S is the first process's status;
 *                        e2erun itself stays until a "quit" line or EOF on stdin
 * S is the exit code, or 128 + the signal that ended it. -n: never hold (the
 * release is another command). The workload's stdout and stderr go to LOG
 * (default /tmp/e2e-workload.log), its stdin is /dev/null. EOF on our stdin
 * ends everything (PTRACE_O_EXITKILL).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static long status_kib(pid_t pid, const char *key, char *comm, size_t commlen)
{
	char path[64], line[256];
	long v = -1;
	size_t klen = strlen(key);
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (comm && strncmp(line, "Name:", 5) == 0) {
			char *p = line + 5;
			while (*p == ' ' || *p == '\t')
				p++;
			size_t n = strcspn(p, "\n");
			if (n >= commlen)
				n = commlen - 1;
			memcpy(comm, p, n);
			comm[n] = 0;
		}
		if (strncmp(line, key, klen) == 0)
			v = strtol(line + klen, NULL, 10);
	}
	fclose(f);
	return v;
}

static int code_of(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

int main(int argc, char **argv)
{
	long min_kib = 16384;
	int hold = 1, opt;
	const char *logpath = "/tmp/e2e-workload.log";
	while ((opt = getopt(argc, argv, "+m:no:")) != -1) {
		if (opt == 'm')
			min_kib = strtol(optarg, NULL, 10);
		else if (opt == 'n')
			hold = 0;
		else if (opt == 'o')
			logpath = optarg;
		else
			return 2;
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: e2erun [-m MIN_KIB] [-n] [-o LOG] CMD [ARG...]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid_t root = fork();
	if (root < 0) {
		perror("fork");
		return 1;
	}
	if (root == 0) {
		int out = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int in = open("/dev/null", O_RDONLY);
		if (out < 0 || in < 0)
			_exit(126);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		raise(SIGSTOP);
		execvp(argv[optind], argv + optind);
		fprintf(stderr, "e2erun: %s: %s\n", argv[optind], strerror(errno));
		_exit(127);
	}
	int st;
	if (waitpid(root, &st, 0) < 0 || !WIFSTOPPED(st)) {
		printf("done status=%d\n", code_of(st));
		return 1;
	}
	long opts = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
		    PTRACE_O_EXITKILL | (hold ? PTRACE_O_TRACEEXIT : 0);
	if (ptrace(PTRACE_SETOPTIONS, root, 0, opts) < 0) {
		perror("PTRACE_SETOPTIONS");
		return 1;
	}
	printf("started pid=%d\n", root);
	ptrace(PTRACE_CONT, root, 0, 0);
	int root_code = -1;
	pid_t held = 0;
	char line[64];
	for (;;) {
		pid_t pid = waitpid(-1, &st, __WALL);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break; /* ECHILD: nothing of the workload is left */
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			if (pid == root)
				root_code = code_of(st);
			if (pid == held) {
				printf("gone pid=%d\n", pid);
				held = 0;
			}
			continue;
		}
		if (!WIFSTOPPED(st))
			continue;
		int sig = WSTOPSIG(st), event = st >> 16;
		if (sig == SIGTRAP && event == PTRACE_EVENT_EXIT) {
			unsigned long msg = 0;
			char comm[64] = "?";
			ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg);
			long tgid = status_kib(pid, "Tgid:", NULL, 0);
			long rss = status_kib(pid, "RssAnon:", comm, sizeof(comm));
			/* One held exit at a time: another exit before the held one is gone is not a
			 * release of its own (it overlaps the measured one) and continues at once. */
			if (tgid == pid && rss >= min_kib && !held) {
				printf("exit pid=%d status=%d rss_kib=%ld comm=%s\n", pid, code_of((int)msg), rss, comm);
				if (!fgets(line, sizeof(line), stdin))
					return 1; /* the host went away: EXITKILL ends the workload */
				if (strncmp(line, "kill", 4) == 0)
					kill(pid, SIGKILL);
				held = pid;
			}
			ptrace(PTRACE_CONT, pid, 0, 0);
		} else if (sig == SIGTRAP && event) {
			ptrace(PTRACE_CONT, pid, 0, 0); /* fork, clone, exec: nothing to do */
		} else if (sig == SIGSTOP) {
			ptrace(PTRACE_CONT, pid, 0, 0); /* a new tracee's first stop */
		} else {
			ptrace(PTRACE_CONT, pid, 0, sig); /* the workload's own signal: deliver it */
		}
	}
	printf("done status=%d\n", root_code);
	/* The host ends this channel when it chooses: dropbear 2022.83 was seen to drop the
	 * whole connection when this process exited while the host opened another channel. */
	while (fgets(line, sizeof(line), stdin) && strncmp(line, "quit", 4) != 0)
		;
	return 0;
}

/*
 * k3c init: PID 1 of a container run with `k3c run --init`.
 *
 * A command that runs as PID 1 gets no default signal actions (SIGTERM does nothing unless it installed
 * a handler) and inherits every orphaned process, which it never reaps. This init starts the command as
 * its only child, forwards every signal it receives to it, reaps whatever exits, and exits as the command
 * did (its exit status, or 128 + the signal that killed it). Usage: init [--] COMMAND [ARG...].
 * Built with `gcc -static -Os -s` by k3c/daemon/pause.py; mounted read-only at /sbin/docker-init.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    sigset_t all, old;
    int first = (argc > 1 && strcmp(argv[1], "--") == 0) ? 2 : 1;

    if (first >= argc) {
        fprintf(stderr, "k3c init: no command given\n");
        return 2;
    }
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t child = fork();
    if (child < 0) {
        perror("k3c init: fork");
        return 1;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[first], argv + first);
        fprintf(stderr, "k3c init: exec %s: %s\n", argv[first], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    for (;;) {
        siginfo_t info;
        struct timespec tick = {1, 0};
        int sig = sigtimedwait(&all, &info, &tick);
        if (sig > 0 && sig != SIGCHLD) {
            kill(child, sig);
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid == child) {
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
        }
    }
}

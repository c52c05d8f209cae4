/*
 * k3c pause: the process that holds a pod sandbox's namespaces open.
 *
 * It does nothing but wait: sleeps in pause(), reaps any child that gets re-parented to it (it is PID 1
 * of the sandbox's PID namespace when containers share it), and exits 0 on SIGTERM or SIGINT so that
 * stopping a sandbox is immediate. Built with `gcc -static -Os -s` by k3c/daemon/pause.py.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    struct sigaction sa;

    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        static const char msg[] = "k3c pause\n";
        return write(1, msg, sizeof msg - 1) < 0;
    }

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
        return 1;
    }
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &sa, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}

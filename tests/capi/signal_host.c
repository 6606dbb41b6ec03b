/* A C host that embeds libfcn_deploy, segments one image and then receives SIGTERM while its segmenter is open.
 *
 * usage: signal_host MODEL default|handler
 *   default: the host leaves SIGTERM at its default; the process must end by SIGTERM, not in a crash.
 *   handler: the host handles SIGTERM itself; its handler must run and the program exits 0.
 * Either way, the handling of every signal a runtime could take must be the host's own after each call
 * (exit 3 names the first signal changed). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fcn_deploy.h"

static const int watched[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGXFSZ,
                              SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
#define WATCHED_COUNT (sizeof watched / sizeof watched[0])

static volatile sig_atomic_t host_saw_sigterm = 0;

static void host_handler(int signum) {
    (void)signum;
    host_saw_sigterm = 1;
}

static void snapshot(struct sigaction* actions) {
    for (size_t i = 0; i < WATCHED_COUNT; ++i) sigaction(watched[i], NULL, &actions[i]);
}

/* 0 when every watched signal has the handler it had in before; else the first that changed. */
static int changed_signal(const struct sigaction* before) {
    struct sigaction now[WATCHED_COUNT];
    snapshot(now);
    for (size_t i = 0; i < WATCHED_COUNT; ++i)
        if (now[i].sa_handler != before[i].sa_handler) return watched[i];
    return 0;
}

static int check_signals(const struct sigaction* before, const char* after_call) {
    int signum = changed_signal(before);
    if (signum == 0) return 0;
    fprintf(stderr, "the handling of signal %d (%s) changed in %s\n", signum, strsignal(signum), after_call);
    return 3;
}

int main(int argc, char** argv) {
    if (argc != 3 || (strcmp(argv[2], "default") != 0 && strcmp(argv[2], "handler") != 0)) {
        fprintf(stderr, "usage: %s MODEL default|handler\n", argv[0]);
        return 1;
    }
    if (strcmp(argv[2], "handler") == 0) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = host_handler;
        sigemptyset(&action.sa_mask);
        sigaction(SIGTERM, &action, NULL);
    }
    struct sigaction before[WATCHED_COUNT];
    snapshot(before);

    fcn_segmenter* segmenter = NULL;
    if (fcn_segmenter_create(argv[1], "cpu", &segmenter) != FCN_OK) {
        fprintf(stderr, "create: %s\n", fcn_last_error());
        return 2;
    }
    if (check_signals(before, "fcn_segmenter_create")) return 3;
    static uint8_t pixels[64 * 64 * 3];
    for (size_t i = 0; i < sizeof pixels; ++i) pixels[i] = (uint8_t)(i * 7);
    fcn_image image = {pixels, 64, 64, 64 * 3, FCN_PIXEL_RGB8};
    fcn_mask* masks = NULL;
    if (fcn_segmenter_apply(segmenter, &image, 1, &masks) != FCN_OK) {
        fprintf(stderr, "apply: %s\n", fcn_last_error());
        return 2;
    }
    fcn_masks_release(masks, 1);
    if (check_signals(before, "fcn_segmenter_apply")) return 3;

    printf("segmented; raising SIGTERM\n");
    fflush(stdout);
    raise(SIGTERM); /* with the default handling the process ends here */
    fcn_segmenter_destroy(segmenter);
    if (check_signals(before, "fcn_segmenter_destroy")) return 3;
    if (!host_saw_sigterm) {
        fprintf(stderr, "SIGTERM did not reach the host's handler\n");
        return 4;
    }
    printf("the host's handler received SIGTERM\n");
    return 0;
}

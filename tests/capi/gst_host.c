/*
 * gst_host.c - a small GStreamer host for the fcnsegment tests: runs a gst-launch style pipeline to EOS and prints,
 * for every "fcnsegment" element message, the frame number and the process's resident set size at that moment.
 *
 *   gst_host 'videotestsrc num-buffers=300 ! fcnsegment model=m.onnx ! fakesink'
 *   -> lines "frame=N rss_kb=K", then "eos"; on a pipeline error "error=MESSAGE" and exit status 1
 *   gst_host PIPELINE SEEK_AT EOS_AT
 *   -> after SEEK_AT frames a flushing seek to the start ("seeked"), after EOS_AT frames an EOS sent to the pipeline
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <gst/gst.h>

/* Resident set size of this process in KiB (from /proc/self/statm). */
static long rss_kb(void) {
    long pages = 0, resident = 0;
    FILE* statm = fopen("/proc/self/statm", "r");
    if (statm == NULL) return -1;
    int read = fscanf(statm, "%ld %ld", &pages, &resident);
    fclose(statm);
    return read == 2 ? resident * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

int main(int argc, char** argv) {
    gst_init(&argc, &argv);
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: gst_host PIPELINE [SEEK_AT EOS_AT]\n");
        return 2;
    }
    GError* error = NULL;
    GstElement* pipeline = gst_parse_launch(argv[1], &error);
    if (pipeline == NULL || error != NULL) {
        printf("error=%s\n", error ? error->message : "no pipeline");
        return 1;
    }
    GstBus* bus = gst_element_get_bus(pipeline);
    int status = 1;
    long seek_at = argc == 4 ? atol(argv[2]) : -1, eos_at = argc == 4 ? atol(argv[3]) : -1, seen = 0;
    if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) printf("state=failed\n");
    for (;;) {
        GstMessage* message = gst_bus_timed_pop_filtered(
            bus, GST_CLOCK_TIME_NONE, GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
        const GstStructure* s = gst_message_get_structure(message);
        if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ELEMENT && gst_structure_has_name(s, "fcnsegment")) {
            guint64 frame = 0;
            gst_structure_get_uint64(s, "frame", &frame);
            printf("frame=%" G_GUINT64_FORMAT " rss_kb=%ld\n", frame, rss_kb());
            if (++seen == seek_at) {
                gboolean seeked = gst_element_seek_simple(pipeline, GST_FORMAT_TIME,
                                                          GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_KEY_UNIT, 0);
                printf(seeked ? "seeked\n" : "seek=failed\n");
            }
            if (seen == eos_at) gst_element_send_event(pipeline, gst_event_new_eos());
        } else if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
            GError* failure = NULL;
            gst_message_parse_error(message, &failure, NULL);
            printf("error=%s\n", failure->message);
            g_error_free(failure);
            gst_message_unref(message);
            break;
        } else if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_EOS) {
            printf("eos\n");
            status = 0;
            gst_message_unref(message);
            break;
        }
        gst_message_unref(message);
    }
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(pipeline);
    return status;
}

/*
 * gstfcnsegment.c - the `fcnsegment` GStreamer element: per-pixel semantic segmentation of raw video frames.
 *
 * Written against fcn_deploy.h only, so the same source runs on whichever libfcn_deploy.so it is linked with
 * (native: OpenVINO on the CPU; embedded: every artifact and device of the Python segmenter).
 *
 *   sink: video/x-raw RGB, BGR, RGBx, BGRx, RGBA, BGRA, GRAY8 (any size, any framerate)
 *   src:  mode=overlay  the palette blended over the frame (same format as the input)
 *         mode=mask     the palette image (RGB)
 *         mode=labels   the class index of every pixel (GRAY8)
 *
 * Every frame posts an element message "fcnsegment" with its class pixel counts (counts[i] = pixels of class i).
 * The model opens in READY->PAUSED; EOS, a flush (flushing seek) and PAUSED->READY close it again (it reopens
 * with the next frame).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>

#include "fcn_deploy.h"

#ifndef VERSION
#define VERSION "0.0.0"
#endif
#define PACKAGE "fcnsegment"

#define SINK_FORMATS "{ RGB, BGR, RGBx, BGRx, RGBA, BGRA, GRAY8 }"
#define DEFAULT_DEVICE "auto"
#define DEFAULT_ALPHA 0.5

GST_DEBUG_CATEGORY_STATIC(gst_fcn_segment_debug);
#define GST_CAT_DEFAULT gst_fcn_segment_debug

typedef enum { FCN_MODE_OVERLAY = 0, FCN_MODE_MASK = 1, FCN_MODE_LABELS = 2 } GstFcnSegmentMode;

#define GST_TYPE_FCN_SEGMENT (gst_fcn_segment_get_type())
G_DECLARE_FINAL_TYPE(GstFcnSegment, gst_fcn_segment, GST, FCN_SEGMENT, GstVideoFilter)

struct _GstFcnSegment {
    GstVideoFilter parent;
    /* properties (read and written under the object lock) */
    gchar* model;
    gchar* device;
    GstFcnSegmentMode mode;
    gdouble alpha;
    gchar* classes;
    gboolean classes_changed;
    /* streaming state (the streaming thread, start and stop only) */
    fcn_segmenter* segmenter;
    int num_classes;
    const guint8* palette;
    gboolean* tinted; /* per class: blended in overlay mode */
    guint64* counts;  /* per class: pixels of the current frame */
    guint64 frames;
};

G_DEFINE_TYPE(GstFcnSegment, gst_fcn_segment, GST_TYPE_VIDEO_FILTER)

enum { PROP_0, PROP_MODEL, PROP_DEVICE, PROP_MODE, PROP_ALPHA, PROP_CLASSES };

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE(SINK_FORMATS)));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE(SINK_FORMATS)));

static GType gst_fcn_segment_mode_get_type(void) {
    static GType type = 0;
    static const GEnumValue values[] = {
        {FCN_MODE_OVERLAY, "The class colours blended over the frame (same format as the input)", "overlay"},
        {FCN_MODE_MASK, "The class colours alone (RGB)", "mask"},
        {FCN_MODE_LABELS, "The class index of every pixel (GRAY8)", "labels"},
        {0, NULL, NULL}};
    if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstFcnSegmentMode", values));
    return type;
}

/* --- the segmenter ---------------------------------------------------------------------------------- */

/* What the user should do about a failed fcn_segmenter_create. */
static const char* create_fix(int status) {
    switch (status) {
    case FCN_E_NOT_FOUND:
        return "set model= to an existing model file written by fcn-deploy (fcn-deploy export writes one)";
    case FCN_E_BAD_MODEL:
        return "set model= to an ONNX file written by fcn-deploy export (or its OpenVINO IR .xml)";
    case FCN_E_BACKEND_UNAVAILABLE:
        return "use device=cpu, or build the plugin against the embedded library "
               "(fcn-deploy capi build --runtime embedded --gstreamer) for CUDA and TensorRT engines";
    case FCN_E_INVALID_ARG:
        return "set device= to auto, cpu, cuda, openvino, openvino:f32 or openvino:bf16";
    default:
        return "see the message above";
    }
}

static void close_segmenter(GstFcnSegment* self) {
    if (self->segmenter != NULL) GST_DEBUG_OBJECT(self, "closing the model after %" G_GUINT64_FORMAT " frames",
                                                  self->frames);
    fcn_segmenter_destroy(self->segmenter);
    self->segmenter = NULL;
    self->palette = NULL;
    self->num_classes = 0;
    g_clear_pointer(&self->tinted, g_free);
    g_clear_pointer(&self->counts, g_free);
}

/* Parse `classes` (comma-separated class indices or names; empty: every class but 0, background) into
 * self->tinted; FALSE (with an element error) for an unknown class. */
static gboolean parse_classes(GstFcnSegment* self) {
    GST_OBJECT_LOCK(self);
    gchar* text = g_strdup(self->classes);
    self->classes_changed = FALSE;
    GST_OBJECT_UNLOCK(self);
    gboolean ok = TRUE;
    if (text == NULL || *g_strstrip(text) == '\0') {
        for (int i = 0; i < self->num_classes; ++i) self->tinted[i] = i != 0;
        g_free(text);
        return TRUE;
    }
    for (int i = 0; i < self->num_classes; ++i) self->tinted[i] = FALSE;
    gchar** items = g_strsplit(text, ",", -1);
    for (gchar** item = items; *item != NULL && ok; ++item) {
        const gchar* name = g_strstrip(*item);
        char* end = NULL;
        errno = 0;
        long index = strtol(name, &end, 10);
        if (*name == '\0' || *end != '\0' || errno != 0) {
            index = -1;
            for (int i = 0; i < self->num_classes && index < 0; ++i) {
                const char* class_name = fcn_segmenter_class_name(self->segmenter, i);
                if (class_name != NULL && g_ascii_strcasecmp(class_name, name) == 0) index = i;
            }
        }
        if (index < 0 || index >= self->num_classes) {
            GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
                              ("unknown class '%s' in classes=%s; fix: list class indices 0..%d or class names of "
                               "the model, separated by commas",
                               name, text, self->num_classes - 1),
                              (NULL));
            ok = FALSE;
        } else {
            self->tinted[index] = TRUE;
        }
    }
    g_strfreev(items);
    g_free(text);
    return ok;
}

/* Open the model named by the properties; FALSE with an element error naming the fix. */
static gboolean open_segmenter(GstFcnSegment* self) {
    GST_OBJECT_LOCK(self);
    gchar* model = g_strdup(self->model);
    gchar* device = g_strdup(self->device);
    GST_OBJECT_UNLOCK(self);
    gboolean ok = FALSE;
    if (model == NULL || *model == '\0') {
        GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                          ("fcnsegment has no model; fix: set model= to an ONNX file written by fcn-deploy export"),
                          (NULL));
        goto done;
    }
    GST_INFO_OBJECT(self, "opening the model %s on device %s", model, device);
    int status = fcn_segmenter_create(model, device, &self->segmenter);
    if (status != FCN_OK) {
        gchar* text = g_strdup_printf("cannot open model %s (%s): %s; fix: %s", model, fcn_status_name(status),
                                      fcn_last_error(), create_fix(status));
        gst_element_message_full(GST_ELEMENT(self), GST_MESSAGE_ERROR, GST_RESOURCE_ERROR,
                                 status == FCN_E_NOT_FOUND ? GST_RESOURCE_ERROR_NOT_FOUND : GST_RESOURCE_ERROR_OPEN_READ,
                                 text, NULL, __FILE__, GST_FUNCTION, __LINE__);
        goto done;
    }
    if (fcn_segmenter_num_classes(self->segmenter, &self->num_classes) != FCN_OK ||
        fcn_segmenter_palette(self->segmenter, &self->palette, NULL) != FCN_OK || self->num_classes < 1 ||
        self->num_classes > 256) {
        GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ,
                          ("model %s: cannot read its classes: %s; fix: re-export the model with fcn-deploy export",
                           model, fcn_last_error()),
                          (NULL));
        close_segmenter(self);
        goto done;
    }
    self->tinted = g_new0(gboolean, self->num_classes);
    self->counts = g_new0(guint64, self->num_classes);
    self->frames = 0;
    ok = parse_classes(self);
    if (!ok) close_segmenter(self);
done:
    g_free(model);
    g_free(device);
    return ok;
}

/* --- output ----------------------------------------------------------------------------------------- */

static fcn_pixel_format pixel_format(GstVideoFormat format) {
    switch (format) {
    case GST_VIDEO_FORMAT_RGB: return FCN_PIXEL_RGB8;
    case GST_VIDEO_FORMAT_BGR: return FCN_PIXEL_BGR8;
    case GST_VIDEO_FORMAT_RGBx:
    case GST_VIDEO_FORMAT_RGBA: return FCN_PIXEL_RGBA8;
    case GST_VIDEO_FORMAT_BGRx:
    case GST_VIDEO_FORMAT_BGRA: return FCN_PIXEL_BGRA8;
    default: return FCN_PIXEL_GRAY8;
    }
}

/* Bytes a pixel and the byte offsets of R, G and B in a pixel (GRAY8: one byte, offsets 0). */
typedef struct {
    int bytes, r, g, b;
} pixel_layout;

static pixel_layout layout_of(GstVideoFormat format) {
    switch (format) {
    case GST_VIDEO_FORMAT_RGB: return (pixel_layout){3, 0, 1, 2};
    case GST_VIDEO_FORMAT_BGR: return (pixel_layout){3, 2, 1, 0};
    case GST_VIDEO_FORMAT_RGBx:
    case GST_VIDEO_FORMAT_RGBA: return (pixel_layout){4, 0, 1, 2};
    case GST_VIDEO_FORMAT_BGRx:
    case GST_VIDEO_FORMAT_BGRA: return (pixel_layout){4, 2, 1, 0};
    default: return (pixel_layout){1, 0, 0, 0};
    }
}

/* The frame with the colour of every tinted class blended in: (pixel * (256 - w) + colour * w) >> 8 with
 * w = round(alpha * 256), as fcn-deploy's Python overlay; GRAY8 frames blend the colour's luma. */
static void write_overlay(const GstFcnSegment* self, const GstVideoFrame* in, GstVideoFrame* out,
                          const fcn_mask* mask, double alpha) {
    pixel_layout px = layout_of(GST_VIDEO_FRAME_FORMAT(in));
    unsigned weight = (unsigned)(alpha * 256.0 + 0.5);
    guint8 luma[256];
    for (int c = 0; c < self->num_classes; ++c) {
        const guint8* rgb = self->palette + 3 * c;
        luma[c] = (guint8)((77u * rgb[0] + 150u * rgb[1] + 29u * rgb[2]) >> 8);
    }
    int row_bytes = mask->width * px.bytes;
    for (int y = 0; y < mask->height; ++y) {
        const guint8* src = (const guint8*)GST_VIDEO_FRAME_PLANE_DATA(in, 0) + (gsize)y * GST_VIDEO_FRAME_PLANE_STRIDE(in, 0);
        guint8* dst = (guint8*)GST_VIDEO_FRAME_PLANE_DATA(out, 0) + (gsize)y * GST_VIDEO_FRAME_PLANE_STRIDE(out, 0);
        const guint8* labels = mask->labels + (gsize)y * mask->width;
        memcpy(dst, src, (size_t)row_bytes);
        for (int x = 0; x < mask->width; ++x) {
            unsigned c = labels[x];
            if (c >= (unsigned)self->num_classes || !self->tinted[c]) continue;
            guint8* p = dst + (gsize)x * px.bytes;
            if (px.bytes == 1) {
                p[0] = (guint8)((p[0] * (256u - weight) + luma[c] * weight) >> 8);
                continue;
            }
            const guint8* rgb = self->palette + 3 * c;
            p[px.r] = (guint8)((p[px.r] * (256u - weight) + rgb[0] * weight) >> 8);
            p[px.g] = (guint8)((p[px.g] * (256u - weight) + rgb[1] * weight) >> 8);
            p[px.b] = (guint8)((p[px.b] * (256u - weight) + rgb[2] * weight) >> 8);
        }
    }
}

/* The palette image (RGB): every pixel the colour of its class (black beyond the palette). */
static void write_mask(const GstFcnSegment* self, GstVideoFrame* out, const fcn_mask* mask) {
    for (int y = 0; y < mask->height; ++y) {
        guint8* dst = (guint8*)GST_VIDEO_FRAME_PLANE_DATA(out, 0) + (gsize)y * GST_VIDEO_FRAME_PLANE_STRIDE(out, 0);
        const guint8* labels = mask->labels + (gsize)y * mask->width;
        for (int x = 0; x < mask->width; ++x, dst += 3) {
            unsigned c = labels[x];
            if (c < (unsigned)self->num_classes) {
                memcpy(dst, self->palette + 3 * c, 3);
            } else {
                memset(dst, 0, 3);
            }
        }
    }
}

/* The class indices (GRAY8), row by row (the output rows may be padded). */
static void write_labels(GstVideoFrame* out, const fcn_mask* mask) {
    for (int y = 0; y < mask->height; ++y) {
        guint8* dst = (guint8*)GST_VIDEO_FRAME_PLANE_DATA(out, 0) + (gsize)y * GST_VIDEO_FRAME_PLANE_STRIDE(out, 0);
        memcpy(dst, mask->labels + (gsize)y * mask->width, (size_t)mask->width);
    }
}

/* Post the frame's class pixel counts as an element message "fcnsegment". */
static void post_counts(GstFcnSegment* self, const GstVideoFrame* in, const fcn_mask* mask) {
    memset(self->counts, 0, sizeof(guint64) * (size_t)self->num_classes);
    gsize pixels = (gsize)mask->width * mask->height;
    for (gsize i = 0; i < pixels; ++i) {
        if (mask->labels[i] < self->num_classes) ++self->counts[mask->labels[i]];
    }
    GValue counts = G_VALUE_INIT;
    g_value_init(&counts, GST_TYPE_ARRAY);
    for (int c = 0; c < self->num_classes; ++c) {
        GValue count = G_VALUE_INIT;
        g_value_init(&count, G_TYPE_UINT64);
        g_value_set_uint64(&count, self->counts[c]);
        gst_value_array_append_and_take_value(&counts, &count);
    }
    GstStructure* s = gst_structure_new("fcnsegment", "frame", G_TYPE_UINT64, self->frames, "timestamp", G_TYPE_UINT64,
                                        GST_BUFFER_PTS(in->buffer), "width", G_TYPE_INT, mask->width, "height",
                                        G_TYPE_INT, mask->height, NULL);
    gst_structure_take_value(s, "counts", &counts);
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

static GstFlowReturn gst_fcn_segment_transform_frame(GstVideoFilter* filter, GstVideoFrame* in, GstVideoFrame* out) {
    GstFcnSegment* self = GST_FCN_SEGMENT(filter);
    if (self->segmenter == NULL && !open_segmenter(self)) return GST_FLOW_ERROR;
    GST_OBJECT_LOCK(self);
    GstFcnSegmentMode mode = self->mode;
    double alpha = self->alpha;
    gboolean classes_changed = self->classes_changed;
    GST_OBJECT_UNLOCK(self);
    if (classes_changed && !parse_classes(self)) return GST_FLOW_ERROR;

    fcn_image image = {GST_VIDEO_FRAME_PLANE_DATA(in, 0), GST_VIDEO_FRAME_WIDTH(in), GST_VIDEO_FRAME_HEIGHT(in),
                       GST_VIDEO_FRAME_PLANE_STRIDE(in, 0), pixel_format(GST_VIDEO_FRAME_FORMAT(in))};
    fcn_mask* masks = NULL;
    int status = fcn_segmenter_apply(self->segmenter, &image, 1, &masks);
    if (status != FCN_OK) {
        GST_ELEMENT_ERROR(self, STREAM, FAILED,
                          ("segmenting a %dx%d frame failed (%s): %s", image.width, image.height,
                           fcn_status_name(status), fcn_last_error()),
                          (NULL));
        return GST_FLOW_ERROR;
    }
    switch (mode) {
    case FCN_MODE_OVERLAY: write_overlay(self, in, out, &masks[0], alpha); break;
    case FCN_MODE_MASK: write_mask(self, out, &masks[0]); break;
    case FCN_MODE_LABELS: write_labels(out, &masks[0]); break;
    }
    post_counts(self, in, &masks[0]);
    fcn_masks_release(masks, 1);
    ++self->frames;
    return GST_FLOW_OK;
}

/* --- negotiation and lifetime ----------------------------------------------------------------------- */

/* overlay: the same caps both ways; mask and labels: the source side is RGB or GRAY8, the sink side any format. */
static GstCaps* gst_fcn_segment_transform_caps(GstBaseTransform* trans, GstPadDirection direction, GstCaps* caps,
                                               GstCaps* filter) {
    GstFcnSegment* self = GST_FCN_SEGMENT(trans);
    GST_OBJECT_LOCK(self);
    GstFcnSegmentMode mode = self->mode;
    GST_OBJECT_UNLOCK(self);
    GstCaps* result = gst_caps_new_empty();
    for (guint i = 0; i < gst_caps_get_size(caps); ++i) {
        GstStructure* s = gst_structure_copy(gst_caps_get_structure(caps, i));
        if (mode != FCN_MODE_OVERLAY) {
            gst_structure_remove_fields(s, "format", "colorimetry", "chroma-site", NULL);
            if (direction == GST_PAD_SINK) {
                gst_structure_set(s, "format", G_TYPE_STRING, mode == FCN_MODE_MASK ? "RGB" : "GRAY8", NULL);
            } else {
                GstCaps* formats = gst_static_caps_get(&sink_template.static_caps);
                gst_structure_set_value(s, "format", gst_structure_get_value(gst_caps_get_structure(formats, 0),
                                                                             "format"));
                gst_caps_unref(formats);
            }
        }
        GstCapsFeatures* features = gst_caps_get_features(caps, i);
        result = gst_caps_merge_structure_full(result, s, features ? gst_caps_features_copy(features) : NULL);
    }
    if (filter != NULL) {
        GstCaps* both = gst_caps_intersect_full(filter, result, GST_CAPS_INTERSECT_FIRST);
        gst_caps_unref(result);
        result = both;
    }
    GST_DEBUG_OBJECT(self, "%s caps %" GST_PTR_FORMAT " -> %" GST_PTR_FORMAT,
                     direction == GST_PAD_SINK ? "sink" : "src", caps, result);
    return result;
}

static gboolean gst_fcn_segment_set_info(GstVideoFilter* filter, GstCaps* incaps, GstVideoInfo* in_info,
                                         GstCaps* outcaps, GstVideoInfo* out_info) {
    (void)incaps, (void)outcaps;
    GST_INFO_OBJECT(filter, "frames of %dx%d %s -> %s", GST_VIDEO_INFO_WIDTH(in_info),
                    GST_VIDEO_INFO_HEIGHT(in_info), GST_VIDEO_INFO_NAME(in_info), GST_VIDEO_INFO_NAME(out_info));
    return GST_VIDEO_INFO_WIDTH(in_info) == GST_VIDEO_INFO_WIDTH(out_info) &&
           GST_VIDEO_INFO_HEIGHT(in_info) == GST_VIDEO_INFO_HEIGHT(out_info);
}

static gboolean gst_fcn_segment_start(GstBaseTransform* trans) {
    return open_segmenter(GST_FCN_SEGMENT(trans));
}

static gboolean gst_fcn_segment_stop(GstBaseTransform* trans) {
    close_segmenter(GST_FCN_SEGMENT(trans));
    return TRUE;
}

/* EOS and the end of a flush arrive in the streaming thread, between frames: the model is closed there. */
static gboolean gst_fcn_segment_sink_event(GstBaseTransform* trans, GstEvent* event) {
    if (GST_EVENT_TYPE(event) == GST_EVENT_EOS || GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) {
        close_segmenter(GST_FCN_SEGMENT(trans));
    }
    return GST_BASE_TRANSFORM_CLASS(gst_fcn_segment_parent_class)->sink_event(trans, event);
}

/* --- properties ------------------------------------------------------------------------------------- */

/* model, device and mode take effect when the model opens: refused (with a warning) while it streams. */
static gboolean settable_now(GstFcnSegment* self, const GParamSpec* pspec) {
    GstState state = GST_STATE(self);
    if (state <= GST_STATE_READY) return TRUE;
    g_warning("fcnsegment: '%s' cannot change in state %s; set it before the pipeline leaves READY", pspec->name,
              gst_element_state_get_name(state));
    return FALSE;
}

static void gst_fcn_segment_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
    GstFcnSegment* self = GST_FCN_SEGMENT(object);
    if ((id == PROP_MODEL || id == PROP_DEVICE || id == PROP_MODE) && !settable_now(self, pspec)) return;
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_MODEL: g_free(self->model); self->model = g_value_dup_string(value); break;
    case PROP_DEVICE:
        g_free(self->device);
        self->device = g_value_get_string(value) ? g_value_dup_string(value) : g_strdup(DEFAULT_DEVICE);
        break;
    case PROP_MODE: self->mode = (GstFcnSegmentMode)g_value_get_enum(value); break;
    case PROP_ALPHA: self->alpha = g_value_get_double(value); break;
    case PROP_CLASSES:
        g_free(self->classes);
        self->classes = g_value_dup_string(value);
        self->classes_changed = TRUE;
        break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
    }
    GST_OBJECT_UNLOCK(self);
    if (id == PROP_MODE) gst_base_transform_reconfigure_src(GST_BASE_TRANSFORM(self));
}

static void gst_fcn_segment_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
    GstFcnSegment* self = GST_FCN_SEGMENT(object);
    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_MODEL: g_value_set_string(value, self->model); break;
    case PROP_DEVICE: g_value_set_string(value, self->device); break;
    case PROP_MODE: g_value_set_enum(value, self->mode); break;
    case PROP_ALPHA: g_value_set_double(value, self->alpha); break;
    case PROP_CLASSES: g_value_set_string(value, self->classes ? self->classes : ""); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_fcn_segment_finalize(GObject* object) {
    GstFcnSegment* self = GST_FCN_SEGMENT(object);
    close_segmenter(self);
    g_free(self->model);
    g_free(self->device);
    g_free(self->classes);
    G_OBJECT_CLASS(gst_fcn_segment_parent_class)->finalize(object);
}

static void gst_fcn_segment_init(GstFcnSegment* self) {
    self->device = g_strdup(DEFAULT_DEVICE);
    self->mode = FCN_MODE_OVERLAY;
    self->alpha = DEFAULT_ALPHA;
}

static void gst_fcn_segment_class_init(GstFcnSegmentClass* klass) {
    GObjectClass* object_class = G_OBJECT_CLASS(klass);
    GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
    GstBaseTransformClass* transform_class = GST_BASE_TRANSFORM_CLASS(klass);
    GstVideoFilterClass* filter_class = GST_VIDEO_FILTER_CLASS(klass);

    object_class->set_property = gst_fcn_segment_set_property;
    object_class->get_property = gst_fcn_segment_get_property;
    object_class->finalize = gst_fcn_segment_finalize;
    const GParamFlags flags = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
    g_object_class_install_property(
        object_class, PROP_MODEL,
        g_param_spec_string("model", "Model", "Model file written by fcn-deploy (ONNX; OpenVINO IR with the native "
                            "library; TensorRT engines and checkpoints with the embedded one); opened in READY->PAUSED",
                            NULL, flags | GST_PARAM_MUTABLE_READY));
    g_object_class_install_property(
        object_class, PROP_DEVICE,
        g_param_spec_string("device", "Device", "Device string of the C API: auto, cpu, cuda, openvino, "
                            "openvino:f32 or openvino:bf16", DEFAULT_DEVICE, flags | GST_PARAM_MUTABLE_READY));
    g_object_class_install_property(
        object_class, PROP_MODE,
        g_param_spec_enum("mode", "Mode", "Output: overlay (colours blended over the frame, same format), mask "
                          "(colours alone, RGB) or labels (class indices, GRAY8)",
                          gst_fcn_segment_mode_get_type(), FCN_MODE_OVERLAY, flags | GST_PARAM_MUTABLE_READY));
    g_object_class_install_property(
        object_class, PROP_ALPHA,
        g_param_spec_double("alpha", "Alpha", "Weight of the class colour in overlay mode (0: the frame, 1: the "
                            "colour)", 0.0, 1.0, DEFAULT_ALPHA, flags | GST_PARAM_CONTROLLABLE |
                            GST_PARAM_MUTABLE_PLAYING));
    g_object_class_install_property(
        object_class, PROP_CLASSES,
        g_param_spec_string("classes", "Classes", "Classes blended in overlay mode: class indices or names "
                            "separated by commas, e.g. \"person,15,car\" (empty: every class but 0, background)",
                            "", flags | GST_PARAM_MUTABLE_PLAYING));

    gst_element_class_set_static_metadata(
        element_class, "FCN semantic segmentation", "Filter/Effect/Video",
        "Segments every frame with an fcn-deploy model: overlay, mask or labels; posts the class pixel counts of "
        "each frame as an element message 'fcnsegment' (frame, timestamp, width, height, counts)",
        "fcn-deploy");
    gst_element_class_add_static_pad_template(element_class, &sink_template);
    gst_element_class_add_static_pad_template(element_class, &src_template);

    transform_class->transform_caps = GST_DEBUG_FUNCPTR(gst_fcn_segment_transform_caps);
    transform_class->start = GST_DEBUG_FUNCPTR(gst_fcn_segment_start);
    transform_class->stop = GST_DEBUG_FUNCPTR(gst_fcn_segment_stop);
    transform_class->sink_event = GST_DEBUG_FUNCPTR(gst_fcn_segment_sink_event);
    transform_class->passthrough_on_same_caps = FALSE;
    filter_class->set_info = GST_DEBUG_FUNCPTR(gst_fcn_segment_set_info);
    filter_class->transform_frame = GST_DEBUG_FUNCPTR(gst_fcn_segment_transform_frame);
    gst_type_mark_as_plugin_api(gst_fcn_segment_mode_get_type(), 0);
}

static gboolean plugin_init(GstPlugin* plugin) {
    GST_DEBUG_CATEGORY_INIT(gst_fcn_segment_debug, "fcnsegment", 0, "fcn-deploy semantic segmentation");
    return gst_element_register(plugin, "fcnsegment", GST_RANK_NONE, GST_TYPE_FCN_SEGMENT);
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, fcnsegment,
                  "Semantic segmentation of video frames with fcn-deploy models", plugin_init, VERSION, "Proprietary",
                  "fcn-deploy", "fcn-deploy")

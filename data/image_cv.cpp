/* data/image_cv.cpp -- the project's one C++ file (docs/style.md §2.3): image
 * decoding, encoding and resizing with OpenCV 4.6 behind the C interface
 * data/image_cv.h, and the network-input conversion (docs/datasets.md §0).
 *
 * Every entry point catches whatever OpenCV or the C++ library throws and
 * returns a dg_status after one log line naming the file (or the shapes) and
 * OpenCV's message. Files are read into memory here and decoded with
 * cv::imdecode (the decoders cv::imread uses), so a missing or unreadable
 * file (DG_STATUS_ERR_IO, strerror) is told apart from one OpenCV cannot
 * decode (DG_STATUS_ERR_FORMAT). Written files go to disk atomically through
 * dg_file_write_atomic (data/png_io.h).
 *
 * Shape letters: H, W (pixels), C (channels); images are uint8 (H, W, C). */
#include "data/image_cv.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "data/png_io.h"

extern "C" {
const float DG_IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
const float DG_IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};
}

namespace {

/* Allocates an (h, w, c) image without clearing it. */
void image_alloc(dg_image *img, int h, int w, int c) {
    DG_ASSERT(h >= 1 && w >= 1 && c >= 1 && c <= 4);
    img->data = static_cast<uint8_t *>(
            dg_xmalloc(static_cast<size_t>(h) * static_cast<size_t>(w) * static_cast<size_t>(c)));
    img->h = h;
    img->w = w;
    img->c = c;
}

/* The whole file at path into *buf (dg_free it), its size into *n. */
dg_status read_whole_file(const char *path, uint8_t **buf, size_t *n) {
    if (dg_check_regular_file(path, "image") != DG_STATUS_OK) return DG_STATUS_ERR_IO;
    *buf = nullptr;
    *n = 0;
    FILE *f = std::fopen(path, "rb");
    if (!f) {
        dg_log_error("%s: cannot open: %s", path, std::strerror(errno));
        return DG_STATUS_ERR_IO;
    }
    size_t cap = 1 << 16;
    size_t len = 0;
    uint8_t *p = static_cast<uint8_t *>(dg_xmalloc(cap));
    for (;;) {
        if (len == cap) {
            cap *= 2;
            p = static_cast<uint8_t *>(dg_xrealloc(p, cap));
        }
        const size_t k = std::fread(p + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    const bool failed = std::ferror(f) != 0;
    const int err = errno;
    std::fclose(f);
    if (failed) {
        dg_log_error("%s: cannot read: %s", path, std::strerror(err ? err : EIO));
        dg_free(p);
        return DG_STATUS_ERR_IO;
    }
    *buf = p;
    *n = len;
    return DG_STATUS_OK;
}

bool is_jpeg(const uint8_t *b, size_t n) { return n >= 2 && b[0] == 0xFF && b[1] == 0xD8; }

uint32_t be16(const uint8_t *p) { return static_cast<uint32_t>(p[0]) << 8 | p[1]; }
uint32_t be32(const uint8_t *p) { return be16(p) << 16 | be16(p + 2); }

/* Width and height from a PNG's IHDR or a JPEG's first SOFn marker, without
 * decoding anything; false when the header does not say (other formats, or
 * a header too short: the decoder then judges the file). */
bool header_dims(const uint8_t *b, size_t n, uint64_t *w, uint64_t *h) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 24 && !std::memcmp(b, png_sig, 8) && !std::memcmp(b + 12, "IHDR", 4)) {
        *w = be32(b + 16);
        *h = be32(b + 20);
        return true;
    }
    if (!is_jpeg(b, n)) return false;
    for (size_t i = 2; i + 4 <= n;) {
        if (b[i] != 0xFF) return false;
        while (i < n && b[i] == 0xFF) i++;
        if (i + 3 > n) return false;
        const uint8_t m = b[i++];
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;
        const size_t len = be16(b + i);
        /* SOF0..15 but DHT (C4), JPG (C8), DAC (CC) */
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (i + 7 > n) return false;
            *h = be16(b + i + 3);
            *w = be16(b + i + 5);
            return true;
        }
        if (m == 0xDA || len < 2) return false; /* a scan before any frame header */
        i += len;
    }
    return false;
}

bool is_rst_or_stuffing(uint8_t m) { return m == 0x00 || (m >= 0xD0 && m <= 0xD7); }

/* Whether a JPEG stream (starting with SOI) reaches its EOI marker: walks the
 * marker segments by their lengths (APPn segments, and the thumbnails inside
 * them, are skipped whole) and each scan's entropy-coded data up to the next
 * marker that is neither a stuffed 0xFF00 nor RSTn. libjpeg decodes a stream
 * that stops early with a warning only, padding the image with grey, and
 * OpenCV returns that image as if nothing had happened. */
bool jpeg_is_complete(const uint8_t *b, size_t n) {
    size_t i = 2;
    for (;;) {
        while (i < n && b[i] != 0xFF) i++; /* extraneous bytes, as libjpeg skips them */
        while (i < n && b[i] == 0xFF) i++; /* fill bytes */
        if (i >= n) return false;
        const uint8_t m = b[i++];
        if (m == 0xD9) return true;
        if (m == 0x01 || is_rst_or_stuffing(m)) continue; /* TEM, RSTn: no length */
        if (i + 2 > n) return false;
        const size_t len = (static_cast<size_t>(b[i]) << 8) | b[i + 1];
        if (len < 2 || i + len > n) return false;
        i += len;
        if (m == 0xDA) {
            while (i + 1 < n && !(b[i] == 0xFF && !is_rst_or_stuffing(b[i + 1]))) i++;
        }
    }
}

const char *interp_name(dg_interp interp) {
    switch (interp) {
    case DG_INTERP_BILINEAR: return "bilinear";
    case DG_INTERP_BICUBIC: return "bicubic";
    case DG_INTERP_AREA: return "area";
    case DG_INTERP_NEAREST_EXACT: return "nearest-exact";
    }
    return "unknown";
}

int interp_flag(dg_interp interp) {
    switch (interp) {
    case DG_INTERP_BILINEAR: return cv::INTER_LINEAR;
    case DG_INTERP_BICUBIC: return cv::INTER_CUBIC;
    case DG_INTERP_AREA: return cv::INTER_AREA;
    case DG_INTERP_NEAREST_EXACT: return cv::INTER_NEAREST_EXACT;
    }
    dg_panic(__FILE__, __LINE__, "interp_flag(interp)", "unknown dg_interp value");
}

/* A cv::Mat header over an image's pixels (no copy; OpenCV's constructor
 * takes a non-const pointer even for read-only use). */
cv::Mat mat_of(const dg_image *img) {
    return cv::Mat(img->h, img->w, CV_8UC(img->c), const_cast<uint8_t *>(img->data));
}

/* Encodes img with OpenCV for extension ext (".png", ".jpg") and writes the
 * bytes to path atomically. */
dg_status write_encoded(const char *path, const dg_image *img, const char *ext,
        const std::vector<int> &params) {
    try {
        const cv::Mat src = mat_of(img);
        cv::Mat bgr;
        if (img->c == 3) cv::cvtColor(src, bgr, cv::COLOR_RGB2BGR);
        else if (img->c == 4) cv::cvtColor(src, bgr, cv::COLOR_RGBA2BGRA);
        else bgr = src;
        std::vector<uchar> enc;
        if (!cv::imencode(ext, bgr, enc, params)) {
            dg_log_error("%s: cannot write: OpenCV could not encode a %dx%dx%d image as %s", path,
                    img->h, img->w, img->c, ext);
            return DG_STATUS_ERR_IO;
        }
        const dg_file_part part = {enc.data(), enc.size()};
        return dg_file_write_atomic(path, &part, 1);
    } catch (const std::exception &e) {
        dg_log_error("%s: cannot write: OpenCV: %s", path, e.what());
    } catch (...) {
        dg_log_error("%s: cannot write: unknown C++ exception", path);
    }
    return DG_STATUS_ERR_IO;
}

} // namespace

extern "C" {

void dg_image_init(dg_image *img, int h, int w, int c) {
    image_alloc(img, h, w, c);
    const size_t n = static_cast<size_t>(h) * static_cast<size_t>(w) * static_cast<size_t>(c);
    std::memset(img->data, 0, n);
}

void dg_image_free(dg_image *img) {
    dg_free(img->data);
    std::memset(img, 0, sizeof(*img));
}

dg_status dg_image_read(const char *path, dg_image *out) {
    std::memset(out, 0, sizeof(*out));
    uint8_t *buf = nullptr;
    size_t n = 0;
    dg_status st = read_whole_file(path, &buf, &n);
    if (st != DG_STATUS_OK) return st;
    st = DG_STATUS_ERR_FORMAT;
    try {
        if (n == 0) {
            dg_log_error("%s: empty file, not an image", path);
        } else if (is_jpeg(buf, n) && !jpeg_is_complete(buf, n)) {
            dg_log_error("%s: truncated JPEG: the data ends before the end-of-image marker", path);
        } else if (n > static_cast<size_t>(INT32_MAX)) {
            dg_log_error("%s: file too large to decode (%zu bytes)", path, n);
        } else if (uint64_t w = 0, h = 0; header_dims(buf, n, &w, &h) &&
                w * h > static_cast<uint64_t>(dg_image_max_pixels())) {
            dg_log_error("%s: %llux%llu pixels, above the decoded-image limit of %lld "
                    "(DGSEG_MAX_IMAGE_PIXELS)", path, static_cast<unsigned long long>(w),
                    static_cast<unsigned long long>(h),
                    static_cast<long long>(dg_image_max_pixels()));
        } else {
            const cv::Mat raw(1, static_cast<int>(n), CV_8UC1, buf);
            const cv::Mat bgr =
                    cv::imdecode(raw, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
            if (bgr.empty()) {
                dg_log_error("%s: not a decodable image: OpenCV could not decode its %zu bytes "
                        "(unknown format, corrupt or truncated)", path, n);
            } else {
                DG_ASSERT(bgr.type() == CV_8UC3);
                image_alloc(out, bgr.rows, bgr.cols, 3);
                cv::Mat rgb = mat_of(out);
                cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
                DG_ASSERT(rgb.data == out->data);
                st = DG_STATUS_OK;
            }
        }
    } catch (const std::exception &e) {
        dg_log_error("%s: cannot decode: OpenCV: %s", path, e.what());
        dg_image_free(out);
    } catch (...) {
        dg_log_error("%s: cannot decode: unknown C++ exception", path);
        dg_image_free(out);
    }
    dg_free(buf);
    return st;
}

dg_status dg_image_write_png(const char *path, const dg_image *img) {
    DG_ASSERT(img && img->data && img->h >= 1 && img->w >= 1);
    DG_ASSERT(img->c == 1 || img->c == 3 || img->c == 4);
    return write_encoded(path, img, ".png", {});
}

dg_status dg_image_write_jpeg(const char *path, const dg_image *img, int quality) {
    DG_ASSERT(img && img->data && img->h >= 1 && img->w >= 1);
    DG_ASSERT((img->c == 1 || img->c == 3) && quality >= 1 && quality <= 100);
    return write_encoded(path, img, ".jpg", {cv::IMWRITE_JPEG_QUALITY, quality});
}

dg_status dg_image_resize(const dg_image *src, int oh, int ow, dg_interp interp,
        dg_image *dst) {
    DG_ASSERT(src && dst && src != dst && src->data);
    DG_ASSERT(src->h >= 1 && src->w >= 1 && src->c >= 1 && src->c <= 4 && oh >= 1 && ow >= 1);
    const int flag = interp_flag(interp);
    std::memset(dst, 0, sizeof(*dst));
    try {
        image_alloc(dst, oh, ow, src->c);
        cv::Mat d = mat_of(dst);
        cv::resize(mat_of(src), d, cv::Size(ow, oh), 0.0, 0.0, flag);
        DG_ASSERT(d.data == dst->data);
        return DG_STATUS_OK;
    } catch (const std::exception &e) {
        dg_log_error("resize %dx%dx%d -> %dx%d (%s) failed: OpenCV: %s", src->h, src->w, src->c,
                oh, ow, interp_name(interp), e.what());
    } catch (...) {
        dg_log_error("resize %dx%dx%d -> %dx%d (%s) failed: unknown C++ exception", src->h,
                src->w, src->c, oh, ow, interp_name(interp));
    }
    dg_image_free(dst);
    return DG_STATUS_ERR_SHAPE;
}

void dg_image_to_tensor(const dg_image *img, float *dst, const float *mean, const float *stddev) {
    DG_ASSERT(img && img->data && dst && img->c >= 1 && img->c <= 4);
    DG_ASSERT((mean == nullptr) == (stddev == nullptr));
    const size_t hw = static_cast<size_t>(img->h) * static_cast<size_t>(img->w);
    const size_t nc = static_cast<size_t>(img->c);
    for (size_t c = 0; c < nc; c++) {
        /* The formula per byte value, evaluated once: identical results. */
        float lut[256];
        for (int v = 0; v < 256; v++) {
            const float x = static_cast<float>(v) / 255.f;
            lut[v] = mean ? (x - mean[c]) / stddev[c] : x;
        }
        float *plane = dst + c * hw;
        const uint8_t *s = img->data + c;
        for (size_t i = 0; i < hw; i++) plane[i] = lut[s[i * nc]];
    }
}

} // extern "C"

/* The C ABI from C: every function, its error paths, threads, and a leak-checked loop.
 *
 * Built and run by capi/tests/c_program.rs with the system cc:
 *   test_loc3r BUNDLE_DIR SHORT_BUNDLE_DIR VIDEO LEAK_SOURCE SCRATCH_DIR LEAK_ITERATIONS LEAK_BOUND_MIB
 * SHORT_BUNDLE_DIR is the bundle with a context of a few frames; VIDEO is 160x120; LEAK_SOURCE is what the leak check observes (a video, or a directory of
 * its frames as images); SCRATCH_DIR is an empty directory the program may write to.
 * Prints one line per check group and exits 0 only if every check passed. */

#define _POSIX_C_SOURCE 200809L

#include "loc3r.h"

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, " (last error: %s)\n", loc3r_last_error());          \
            failures++;                                                          \
        }                                                                        \
    } while (0)

/* A call must return `want` and, when it failed, leave a message containing `needle`; when it
 * succeeded, an empty message. */
#define EXPECT(call, want, needle) expect_status((call), (want), (needle), #call, __LINE__)

static void expect_status(Loc3rStatus got, Loc3rStatus want, const char *needle, const char *what, int line) {
    const char *message = loc3r_last_error();
    if (got != want) {
        fprintf(stderr, "FAIL line %d: %s returned %s, expected %s (last error: %s)\n", line, what,
                loc3r_status_name((int)got), loc3r_status_name((int)want), message);
        failures++;
        return;
    }
    if (message == NULL) {
        fprintf(stderr, "FAIL line %d: %s: loc3r_last_error() returned NULL\n", line, what);
        failures++;
    } else if (want == LOC3R_OK && message[0] != '\0') {
        fprintf(stderr, "FAIL line %d: %s succeeded but left the message \"%s\"\n", line, what, message);
        failures++;
    } else if (want != LOC3R_OK && (message[0] == '\0' || (needle != NULL && strstr(message, needle) == NULL))) {
        fprintf(stderr, "FAIL line %d: %s: the message \"%s\" does not mention \"%s\"\n", line, what, message,
                needle ? needle : "(anything)");
        failures++;
    }
}

enum { W = 160, H = 120 };

/* A moving gradient with a bright square: frames differ as a camera's would. Rows are
 * `stride` bytes apart; padding bytes are filled with junk the library must not read. */
static unsigned char *make_frame(int width, int height, size_t stride, int t) {
    unsigned char *px = malloc(stride * (size_t)height);
    if (px == NULL) {
        abort();
    }
    memset(px, 0xAB, stride * (size_t)height);
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            unsigned char *p = px + (size_t)y * stride + (size_t)x * 3;
            int in_square = x >= 20 + 8 * t && x < 60 + 8 * t && y >= 30 && y < 70;
            p[0] = (unsigned char)(in_square ? 250 : (x * 255) / width);
            p[1] = (unsigned char)(in_square ? 240 : (y * 255) / height);
            p[2] = (unsigned char)((x + y + 16 * t) & 0xFF);
        }
    }
    return px;
}

static int pose_is_sane(const Loc3rPose *p) {
    return isfinite(p->x) && isfinite(p->y) && p->sigma_x > 0.0f && p->sigma_y > 0.0f && isfinite(p->yaw_deg) &&
           p->yaw_deg > -180.0001 && p->yaw_deg <= 180.0001 && p->orientation_bins > 0 &&
           p->orientation_confidence >= 1.0f / (float)p->orientation_bins - 1e-6f &&
           p->orientation_confidence <= 1.0f + 1e-6f && (p->orientation_confident || p->yaw_deg == 0.0);
}

/* ------------------------------------------------------------------------------------- */

static void check_basics(void) {
    const char *v = loc3r_version();
    int major = -1, minor = -1, patch = -1;
    CHECK(v != NULL && sscanf(v, "%d.%d.%d", &major, &minor, &patch) == 3, "version \"%s\"", v ? v : "(null)");
    CHECK(strcmp(loc3r_status_name(LOC3R_NOT_FOUND), "LOC3R_NOT_FOUND") == 0, "status name");
    CHECK(strcmp(loc3r_status_name(42), "LOC3R_UNKNOWN_STATUS") == 0, "unknown status name");
    CHECK(loc3r_last_error() != NULL && loc3r_last_error()[0] == '\0', "no error before any call");

    Loc3rOpenOptions open_options;
    EXPECT(loc3r_open_options_default(&open_options), LOC3R_OK, NULL);
    CHECK(open_options.optimization_level == 3 && open_options.frame_batch > 0, "open defaults");
    EXPECT(loc3r_open_options_default(NULL), LOC3R_INVALID_ARGUMENT, "`out` is NULL");
    Loc3rAskOptions ask_options;
    EXPECT(loc3r_ask_options_default(&ask_options), LOC3R_OK, NULL);
    CHECK(ask_options.max_new_tokens == 128 && ask_options.temperature == 0.0f && ask_options.top_p == 1.0f, "ask defaults");
    EXPECT(loc3r_ask_options_default(NULL), LOC3R_INVALID_ARGUMENT, "`out` is NULL");
    printf("basics: version %s\n", v);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        abort();
    }
    fputs(text, f);
    fclose(f);
}

static Loc3rModel *check_open(const char *bundle, const char *scratch) {
    Loc3rModel *model = (Loc3rModel *)&failures; /* must be reset to NULL on failure */
    EXPECT(loc3r_open(NULL, NULL, NULL, &model), LOC3R_INVALID_ARGUMENT, "`bundle_dir` is NULL");
    CHECK(model == NULL, "out_model is NULL after a failure");
    EXPECT(loc3r_open(bundle, NULL, NULL, NULL), LOC3R_INVALID_ARGUMENT, "`out_model` is NULL");
    EXPECT(loc3r_open("/no/such/bundle", NULL, NULL, &model), LOC3R_NOT_FOUND, "/no/such/bundle");
    CHECK(model == NULL, "no model from a missing bundle");
    EXPECT(loc3r_open(bundle, "gpu", NULL, &model), LOC3R_INVALID_ARGUMENT, "unknown device `gpu`");
    EXPECT(loc3r_open(bundle, "cuda:x", NULL, &model), LOC3R_INVALID_ARGUMENT, "GPU index");
    Loc3rOpenOptions options;
    loc3r_open_options_default(&options);
    options.optimization_level = 9;
    EXPECT(loc3r_open(bundle, "cpu", &options, &model), LOC3R_INVALID_ARGUMENT, "optimization_level 9");

    /* A directory that is no bundle: its manifest is missing, then corrupt. */
    char dir[4096], manifest[4200];
    snprintf(dir, sizeof dir, "%s/not-a-bundle", scratch);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    EXPECT(loc3r_open(dir, NULL, NULL, &model), LOC3R_NOT_FOUND, "manifest.json");
    snprintf(manifest, sizeof manifest, "%s/manifest.json", dir);
    write_file(manifest, "{ this is not json");
    EXPECT(loc3r_open(dir, NULL, NULL, &model), LOC3R_BAD_BUNDLE, "manifest.json");
    CHECK(model == NULL, "no model from a corrupt bundle");

    options.optimization_level = 3;
    options.intra_threads = 1;
    EXPECT(loc3r_open(bundle, "cpu", &options, &model), LOC3R_OK, NULL);
    CHECK(model != NULL, "a model");
    printf("open: missing, corrupt, bad device and options refused; bundle opened\n");
    return model;
}

/* ------------------------------------------------------------------------------------- */

static Loc3rScene *check_observe(const Loc3rModel *model, const char *video, const char *scratch) {
    Loc3rScene *scene = (Loc3rScene *)&failures;
    EXPECT(loc3r_observe_video(NULL, video, 3, &scene), LOC3R_INVALID_ARGUMENT, "`model` is NULL");
    CHECK(scene == NULL, "out_scene is NULL after a failure");
    EXPECT(loc3r_observe_video(model, NULL, 3, &scene), LOC3R_INVALID_ARGUMENT, "`path` is NULL");
    EXPECT(loc3r_observe_video(model, video, 3, NULL), LOC3R_INVALID_ARGUMENT, "`out_scene` is NULL");
    EXPECT(loc3r_observe_video(model, "/no/such/video.mp4", 3, &scene), LOC3R_NOT_FOUND, "/no/such/video.mp4");
    EXPECT(loc3r_observe_video(model, video, 0, &scene), LOC3R_INVALID_ARGUMENT, "0 frames");
    EXPECT(loc3r_observe_video(model, video, 100000, &scene), LOC3R_INVALID_ARGUMENT, "frames");
    char junk[4200];
    snprintf(junk, sizeof junk, "%s/junk.mp4", scratch);
    write_file(junk, "these bytes are no video at all");
    EXPECT(loc3r_observe_video(model, junk, 3, &scene), LOC3R_INVALID_ARGUMENT, "junk.mp4");
    CHECK(scene == NULL, "no scene from a bad video");

    EXPECT(loc3r_observe_video(model, video, 3, &scene), LOC3R_OK, NULL);
    size_t frames = 0;
    EXPECT(loc3r_scene_frames(scene, &frames), LOC3R_OK, NULL);
    CHECK(frames == 3, "%zu frames observed", frames);
    EXPECT(loc3r_scene_frames(scene, NULL), LOC3R_INVALID_ARGUMENT, "`out_count` is NULL");
    EXPECT(loc3r_scene_frames(NULL, &frames), LOC3R_INVALID_ARGUMENT, "`scene` is NULL");
    printf("observe_video: missing, junk, 0 and too many frames refused; 3 frames observed\n");
    return scene;
}

static void check_localize(const Loc3rScene *scene) {
    Loc3rPose pose, again, seated;
    EXPECT(loc3r_localize(NULL, NULL, &pose), LOC3R_INVALID_ARGUMENT, "`scene` is NULL");
    EXPECT(loc3r_localize(scene, NULL, NULL), LOC3R_INVALID_ARGUMENT, "`out_pose` is NULL");
    EXPECT(loc3r_localize(scene, "\xff\xfe not utf-8", &pose), LOC3R_INVALID_ARGUMENT, "UTF-8");
    CHECK(pose.x == 0.0f && pose.orientation_bins == 0, "the pose is zeroed on failure");
    EXPECT(loc3r_localize(scene, NULL, &pose), LOC3R_OK, NULL);
    CHECK(pose_is_sane(&pose), "pose x=%g y=%g sx=%g sy=%g yaw=%g conf=%g bins=%u", pose.x, pose.y, pose.sigma_x,
          pose.sigma_y, pose.yaw_deg, pose.orientation_confidence, pose.orientation_bins);
    EXPECT(loc3r_localize(scene, "", &again), LOC3R_OK, NULL);
    CHECK(memcmp(&pose, &again, sizeof pose) == 0 || (pose.x == again.x && pose.yaw_deg == again.yaw_deg),
          "an empty situation is the default one");
    EXPECT(loc3r_localize(scene, "I am sitting on the bed facing the window", &seated), LOC3R_OK, NULL);
    CHECK(pose_is_sane(&seated), "situated pose");
    CHECK(seated.x != pose.x || seated.y != pose.y || seated.yaw_deg != pose.yaw_deg, "the situation changes the pose");
    printf("localize: x=%.3f y=%.3f sigma=(%.3f, %.3f) yaw=%.1f deg (confidence %.3f over %u bins)\n", pose.x,
           pose.y, pose.sigma_x, pose.sigma_y, pose.yaw_deg, pose.orientation_confidence, pose.orientation_bins);
}

typedef struct {
    char text[8192];
    size_t used;
    int calls;
    int stop_after; /* 0 = never */
    int bad_pieces;
} Collected;

static int collect(const char *piece, size_t len, void *user_data) {
    Collected *c = (Collected *)user_data;
    c->calls++;
    if (piece == NULL || piece[len] != '\0') {
        c->bad_pieces++;
    } else if (c->used + len < sizeof c->text) {
        memcpy(c->text + c->used, piece, len);
        c->used += len;
        c->text[c->used] = '\0';
    }
    return c->stop_after == 0 || c->calls < c->stop_after;
}

/* `text` without leading and trailing white space equals `want`. */
static int equals_trimmed(const char *text, const char *want) {
    const char *end = text + strlen(text);
    while (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r') {
        text++;
    }
    while (end > text && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t' || end[-1] == '\r')) {
        end--;
    }
    return (size_t)(end - text) == strlen(want) && strncmp(text, want, (size_t)(end - text)) == 0;
}

static void check_ask(const Loc3rScene *scene) {
    Loc3rAskOptions options;
    loc3r_ask_options_default(&options);
    options.max_new_tokens = 8;
    Loc3rAnswer *answer = (Loc3rAnswer *)&failures;
    const char *q = "Where is the chair?";
    EXPECT(loc3r_ask(NULL, NULL, q, &options, NULL, NULL, &answer), LOC3R_INVALID_ARGUMENT, "`scene` is NULL");
    CHECK(answer == NULL, "out_answer is NULL after a failure");
    EXPECT(loc3r_ask(scene, NULL, NULL, &options, NULL, NULL, &answer), LOC3R_INVALID_ARGUMENT, "`question` is NULL");
    EXPECT(loc3r_ask(scene, NULL, q, &options, NULL, NULL, NULL), LOC3R_INVALID_ARGUMENT, "`out_answer` is NULL");
    EXPECT(loc3r_ask(scene, NULL, "", &options, NULL, NULL, &answer), LOC3R_INVALID_ARGUMENT, "question");
    Loc3rAskOptions bad = options;
    bad.top_p = 0.0f;
    EXPECT(loc3r_ask(scene, NULL, q, &bad, NULL, NULL, &answer), LOC3R_INVALID_ARGUMENT, "top_p");
    bad = options;
    bad.temperature = -1.0f;
    EXPECT(loc3r_ask(scene, NULL, q, &bad, NULL, NULL, &answer), LOC3R_INVALID_ARGUMENT, "temperature");
    CHECK(answer == NULL, "no answer from bad options");

    /* Streamed: the pieces make the answer. */
    Collected all = {0};
    EXPECT(loc3r_ask(scene, NULL, q, &options, collect, &all, &answer), LOC3R_OK, NULL);
    CHECK(answer != NULL && answer->text != NULL && answer->text[answer->text_len] == '\0', "answer text");
    CHECK(answer->generated_tokens >= 1 && answer->generated_tokens <= 8, "%u tokens", answer->generated_tokens);
    CHECK(answer->prompt_tokens > answer->generated_tokens && answer->total_ms > 0.0, "prompt tokens and timings");
    CHECK(all.calls >= 1 && all.bad_pieces == 0, "%d pieces, %d bad", all.calls, all.bad_pieces);
    CHECK(equals_trimmed(all.text, answer->text), "streamed \"%s\" vs answer \"%s\"", all.text, answer->text);
    CHECK(pose_is_sane(&answer->pose), "the answer's pose");
    Loc3rPose pose;
    loc3r_localize(scene, NULL, &pose);
    CHECK(fabsf(pose.x - answer->pose.x) < 1e-5f && fabs(pose.yaw_deg - answer->pose.yaw_deg) < 1e-6,
          "ask and localize agree on the pose");
    printf("ask: \"%s\" (%u tokens, %d pieces, first after %.1f ms)\n", answer->text, answer->generated_tokens,
           all.calls, answer->first_token_ms);

    /* Without a callback: the same greedy answer. */
    Loc3rAnswer *plain = NULL;
    EXPECT(loc3r_ask(scene, "", q, &options, NULL, NULL, &plain), LOC3R_OK, NULL);
    CHECK(plain != NULL && strcmp(plain->text, answer->text) == 0, "greedy answers are deterministic");
    EXPECT(loc3r_answer_free(plain), LOC3R_OK, NULL);

    /* A callback that asks to stop after its first piece: CANCELLED, a partial answer, and it
     * is not called again. */
    Collected first = {0};
    first.stop_after = 1;
    Loc3rAnswer *partial = NULL;
    EXPECT(loc3r_ask(scene, NULL, q, &options, collect, &first, &partial), LOC3R_CANCELLED, "asked to stop");
    CHECK(partial != NULL, "the partial answer is returned");
    CHECK(first.calls == 1, "the callback was called %d times after asking to stop at the first", first.calls);
    if (partial != NULL) {
        CHECK(partial->generated_tokens < answer->generated_tokens || answer->generated_tokens <= 1,
              "stopped early: %u of %u tokens", partial->generated_tokens, answer->generated_tokens);
        EXPECT(loc3r_answer_free(partial), LOC3R_OK, NULL);
    }
    EXPECT(loc3r_answer_free(answer), LOC3R_OK, NULL);
    EXPECT(loc3r_answer_free(answer), LOC3R_INVALID_ARGUMENT, "already freed");
    EXPECT(loc3r_answer_free(NULL), LOC3R_OK, NULL);
    printf("ask: NULLs, empty question, bad options, stop from the callback, double free handled\n");
}

/* ------------------------------------------------------------------------------------- */

static Loc3rScene *check_live(const Loc3rModel *model) {
    Loc3rScene *scene = NULL;
    EXPECT(loc3r_scene_new(NULL, &scene), LOC3R_INVALID_ARGUMENT, "`model` is NULL");
    EXPECT(loc3r_scene_new(model, NULL), LOC3R_INVALID_ARGUMENT, "`out_scene` is NULL");
    EXPECT(loc3r_scene_new(model, &scene), LOC3R_OK, NULL);
    size_t frames = 99;
    EXPECT(loc3r_scene_frames(scene, &frames), LOC3R_OK, NULL);
    CHECK(frames == 0, "a new scene has %zu frames", frames);
    Loc3rPose pose;
    Loc3rAnswer *answer = NULL;
    EXPECT(loc3r_localize(scene, NULL, &pose), LOC3R_NO_FRAMES, "loc3r_push_frame");
    EXPECT(loc3r_ask(scene, NULL, "Where is the door?", NULL, NULL, NULL, &answer), LOC3R_NO_FRAMES, "no frames");
    CHECK(answer == NULL, "no answer from an empty scene");

    size_t stride = W * 3 + 13; /* padded rows */
    unsigned char *px = make_frame(W, H, stride, 0);
    EXPECT(loc3r_push_frame(NULL, px, W, H, stride, 0.0), LOC3R_INVALID_ARGUMENT, "`scene` is NULL");
    EXPECT(loc3r_push_frame(scene, NULL, W, H, stride, 0.0), LOC3R_INVALID_ARGUMENT, "`rgb8_pixels` is NULL");
    EXPECT(loc3r_push_frame(scene, px, W, H, W * 3 - 1, 0.0), LOC3R_INVALID_ARGUMENT, "stride 479");
    EXPECT(loc3r_push_frame(scene, px, W, H, W, 0.0), LOC3R_INVALID_ARGUMENT, "smaller than width * 3");
    EXPECT(loc3r_push_frame(scene, px, 0, H, stride, 0.0), LOC3R_INVALID_ARGUMENT, "at least 1");
    EXPECT(loc3r_push_frame(scene, px, W, 0, stride, 0.0), LOC3R_INVALID_ARGUMENT, "at least 1");
    EXPECT(loc3r_push_frame(scene, px, W, H, stride, NAN), LOC3R_INVALID_ARGUMENT, "time_s");
    EXPECT(loc3r_push_frame(scene, px, W, H, stride, -1.0), LOC3R_INVALID_ARGUMENT, "time_s");
    EXPECT(loc3r_push_frame(scene, px, 100000, 100000, 300000, 0.0), LOC3R_INVALID_ARGUMENT, "pixels");
    /* A frame whose aspect the bundle was not exported for; the scene stays empty and takes
     * a good frame after it. */
    unsigned char *wide = make_frame(W, 40, W * 3, 0);
    EXPECT(loc3r_push_frame(scene, wide, W, 40, W * 3, 0.0), LOC3R_INVALID_ARGUMENT, "cut3r-size");
    free(wide);
    EXPECT(loc3r_scene_frames(scene, &frames), LOC3R_OK, NULL);
    CHECK(frames == 0, "a refused first frame leaves the scene empty (%zu frames)", frames);

    EXPECT(loc3r_push_frame(scene, px, W, H, stride, 0.0), LOC3R_OK, NULL);
    EXPECT(loc3r_localize(scene, NULL, &pose), LOC3R_OK, NULL);
    CHECK(pose_is_sane(&pose), "pose after one frame");

    /* Another size than the first frame's. */
    unsigned char *big = make_frame(2 * W, 2 * H, 2 * W * 3, 1);
    EXPECT(loc3r_push_frame(scene, big, 2 * W, 2 * H, 2 * W * 3, 0.5), LOC3R_INVALID_ARGUMENT, "160x120");
    free(big);
    free(px);
    px = make_frame(W, H, W * 3, 1);
    EXPECT(loc3r_push_frame(scene, px, W, H, W * 3, 1.0), LOC3R_OK, NULL);
    /* Time going backwards. */
    EXPECT(loc3r_push_frame(scene, px, W, H, W * 3, 0.5), LOC3R_INVALID_ARGUMENT, "before the previous frame");
    free(px);
    px = make_frame(W, H, W * 3, 2);
    EXPECT(loc3r_push_frame(scene, px, W, H, W * 3, 1.0), LOC3R_OK, NULL); /* an equal time is fine */
    free(px);
    EXPECT(loc3r_scene_frames(scene, &frames), LOC3R_OK, NULL);
    CHECK(frames == 3, "%zu frames after three good pushes", frames);
    Loc3rPose later;
    EXPECT(loc3r_localize(scene, NULL, &later), LOC3R_OK, NULL);
    CHECK(pose_is_sane(&later) && (later.x != pose.x || later.yaw_deg != pose.yaw_deg), "new frames move the pose");
    Collected all = {0};
    Loc3rAskOptions options;
    loc3r_ask_options_default(&options);
    options.max_new_tokens = 4;
    EXPECT(loc3r_ask(scene, NULL, "Where is the door?", &options, collect, &all, &answer), LOC3R_OK, NULL);
    EXPECT(loc3r_answer_free(answer), LOC3R_OK, NULL);
    printf("live frames: empty scene, NULLs, stride, sizes, aspect, NaN and backward times refused; 3 frames pushed\n");
    return scene;
}

/* Frames pushed after an observed video must have its size and come after its last frame. */
static void check_push_onto_video(Loc3rScene *video_scene) {
    unsigned char *px = make_frame(W, H, W * 3, 3);
    EXPECT(loc3r_push_frame(video_scene, px, W, H, W * 3, 0.0), LOC3R_INVALID_ARGUMENT, "before the previous frame");
    EXPECT(loc3r_push_frame(video_scene, px, W, H, W * 3, 5.0), LOC3R_OK, NULL);
    free(px);
    px = make_frame(W / 2, H / 2, W / 2 * 3, 3);
    EXPECT(loc3r_push_frame(video_scene, px, W / 2, H / 2, W / 2 * 3, 6.0), LOC3R_INVALID_ARGUMENT, "160x120");
    free(px);
    size_t frames = 0;
    loc3r_scene_frames(video_scene, &frames);
    CHECK(frames == 4, "%zu frames after pushing one onto 3 observed", frames);
    printf("push onto a video: its size and times enforced\n");
}

/* A robot's scene fills the model's context: the push that no longer fits is refused with a
 * message saying so, and the scene keeps its frames. */
static void check_context_full(const char *short_bundle) {
    Loc3rModel *model = NULL;
    Loc3rScene *scene = NULL;
    EXPECT(loc3r_open(short_bundle, NULL, NULL, &model), LOC3R_OK, NULL);
    EXPECT(loc3r_scene_new(model, &scene), LOC3R_OK, NULL);
    unsigned char *px = make_frame(W, H, W * 3, 0);
    Loc3rStatus status = LOC3R_OK;
    int pushed = 0;
    while (pushed < 100 && (status = loc3r_push_frame(scene, px, W, H, W * 3, (double)pushed)) == LOC3R_OK) {
        pushed++;
    }
    free(px);
    expect_status(status, LOC3R_INVALID_ARGUMENT, "the model supports", "the push past the context", __LINE__);
    size_t frames = 0;
    EXPECT(loc3r_scene_frames(scene, &frames), LOC3R_OK, NULL);
    CHECK(pushed >= 2 && frames == (size_t)pushed, "%d frames fit, the scene has %zu", pushed, frames);
    printf("context full: %d frames fit, the next push refused, the scene kept its frames\n", pushed);
    loc3r_scene_free(scene);
    loc3r_close(model);
}

/* ------------------------------------------------------------------------------------- */

typedef struct {
    Loc3rScene *scene;
    int push; /* push a frame instead of localizing */
    double time_s;
    int ok;
    int null_refused;
    char error_seen[256];
} Job;

static void *run_job(void *arg) {
    Job *job = (Job *)arg;
    job->ok = 1;
    /* An error on this thread is this thread's own. */
    job->null_refused = loc3r_localize(job->scene, NULL, NULL) == LOC3R_INVALID_ARGUMENT;
    snprintf(job->error_seen, sizeof job->error_seen, "%s", loc3r_last_error());
    if (job->push) {
        unsigned char *px = make_frame(W, H, W * 3, 4);
        job->ok = loc3r_push_frame(job->scene, px, W, H, W * 3, job->time_s) == LOC3R_OK;
        free(px);
    } else {
        for (int i = 0; i < 3; i++) {
            Loc3rPose pose;
            job->ok &= loc3r_localize(job->scene, NULL, &pose) == LOC3R_OK && pose_is_sane(&pose);
        }
    }
    return NULL;
}

static void check_threads(Loc3rScene *scene) {
    enum { N = 4 };
    /* A failure on this thread first: the threads' own failures must not replace its message. */
    EXPECT(loc3r_scene_frames(scene, NULL), LOC3R_INVALID_ARGUMENT, "out_count");
    char mine[512];
    snprintf(mine, sizeof mine, "%s", loc3r_last_error());
    size_t before = 0;
    Job jobs[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].scene = scene;
        jobs[i].push = i == N - 1;
        jobs[i].time_s = 10.0;
        CHECK(pthread_create(&threads[i], NULL, run_job, &jobs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < N; i++) {
        pthread_join(threads[i], NULL);
        CHECK(jobs[i].ok, "thread %d (%s) failed", i, jobs[i].push ? "push" : "localize");
        CHECK(jobs[i].null_refused && strstr(jobs[i].error_seen, "out_pose") != NULL, "thread %d saw \"%s\"", i,
              jobs[i].error_seen);
    }
    CHECK(strcmp(loc3r_last_error(), mine) == 0, "this thread's message is its own: \"%s\"", loc3r_last_error());
    EXPECT(loc3r_scene_frames(scene, &before), LOC3R_OK, NULL);
    CHECK(before == 4, "%zu frames after a push from another thread", before);
    printf("threads: %d concurrent localize + push on one scene; errors stay per thread\n", N);
}

/* ------------------------------------------------------------------------------------- */

static void check_freed(Loc3rModel *model, Loc3rScene *video_scene, Loc3rScene *live_scene) {
    EXPECT(loc3r_scene_free(NULL), LOC3R_OK, NULL);
    EXPECT(loc3r_close(NULL), LOC3R_OK, NULL);
    EXPECT(loc3r_localize((const Loc3rScene *)model, NULL, &(Loc3rPose){0}), LOC3R_INVALID_ARGUMENT,
           "not a live scene handle");

    EXPECT(loc3r_scene_free(live_scene), LOC3R_OK, NULL);
    unsigned char *px = make_frame(W, H, W * 3, 5);
    EXPECT(loc3r_push_frame(live_scene, px, W, H, W * 3, 20.0), LOC3R_INVALID_ARGUMENT, "already freed");
    free(px);
    Loc3rPose pose;
    EXPECT(loc3r_localize(live_scene, NULL, &pose), LOC3R_INVALID_ARGUMENT, "already freed");
    EXPECT(loc3r_scene_free(live_scene), LOC3R_INVALID_ARGUMENT, "already freed");

    /* A scene outlives its model. */
    EXPECT(loc3r_close(model), LOC3R_OK, NULL);
    EXPECT(loc3r_localize(video_scene, NULL, &pose), LOC3R_OK, NULL);
    Loc3rScene *none = NULL;
    EXPECT(loc3r_scene_new(model, &none), LOC3R_INVALID_ARGUMENT, "already freed");
    EXPECT(loc3r_close(model), LOC3R_INVALID_ARGUMENT, "already freed");
    EXPECT(loc3r_scene_free(video_scene), LOC3R_OK, NULL);
    printf("freed handles: push, localize, second free and a closed model refused; a scene outlives its model\n");
}

/* ------------------------------------------------------------------------------------- */

/* Resident memory after handing free heap pages back to the system, so that what is measured
 * is memory in use rather than the allocator's free lists. */
static double rss_mib(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL || fscanf(f, "%ld %ld", &size, &resident) != 2) {
        abort();
    }
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* observe/ask/push/localize/free many times, reopening the model every REOPEN_EVERY
 * iterations (opening takes ~0.3 s, the rest ~0.1 s): RSS must stay flat after a warm-up
 * (ONNX Runtime's and the allocator's pools fill in the first iterations). Measured on the
 * tiny bundle: a leaked model adds ~18 MiB, the two scenes of an iteration ~0.2 MiB. RSS is
 * read after each close: with the model closed every reading is of the same state. */
enum { REOPEN_EVERY = 10 };

static void check_leaks(const char *bundle, const char *source, int iterations, double bound_mib) {
    int warmup = iterations / 10 > 0 ? iterations / 10 : 1;
    double baseline = 0.0, peak = 0.0, start = now_s();
    int opens = 0;
    Loc3rOpenOptions open_options;
    loc3r_open_options_default(&open_options);
    open_options.intra_threads = 1;
    Loc3rAskOptions ask_options;
    loc3r_ask_options_default(&ask_options);
    ask_options.max_new_tokens = 4;
    unsigned char *px = make_frame(W, H, W * 3, 0);
    Loc3rModel *model = NULL;
    for (int i = 1; i <= iterations; i++) {
        if (model == NULL) {
            EXPECT(loc3r_open(bundle, "cpu", &open_options, &model), LOC3R_OK, NULL);
            opens++;
            if (model == NULL) {
                break;
            }
        }
        Loc3rScene *scene = NULL, *live = NULL;
        Loc3rAnswer *answer = NULL;
        Loc3rPose pose;
        Collected c = {0};
        int ok = loc3r_observe_video(model, source, 2, &scene) == LOC3R_OK &&
                 loc3r_ask(scene, NULL, "Where is the chair?", &ask_options, collect, &c, &answer) == LOC3R_OK &&
                 loc3r_scene_new(model, &live) == LOC3R_OK &&
                 loc3r_push_frame(live, px, W, H, W * 3, 0.0) == LOC3R_OK &&
                 loc3r_localize(live, NULL, &pose) == LOC3R_OK;
        CHECK(ok, "iteration %d", i);
        loc3r_answer_free(answer);
        loc3r_scene_free(live);
        loc3r_scene_free(scene);
        if (i % REOPEN_EVERY == 0 || i == iterations || !ok) {
            loc3r_close(model);
            model = NULL;
        }
        if (!ok) {
            break;
        }
        if (model == NULL) {
            double rss = rss_mib();
            if (baseline == 0.0 && i >= warmup) {
                baseline = peak = rss;
                warmup = i;
            } else if (baseline != 0.0 && rss > peak) {
                peak = rss;
            }
            if (i % (5 * REOPEN_EVERY) == 0) {
                printf("leak check: iteration %d: RSS %.1f MiB\n", i, rss);
            }
        }
    }
    free(px);
    double end = rss_mib();
    printf("leak check: %d iterations of observe/ask/push/localize/free (%d opens) of %s in %.1f s; RSS %.1f MiB "
           "after %d, %.1f MiB at the end, peak %+.1f MiB over the warm-up value (bound %.1f MiB)\n",
           iterations, opens, source, now_s() - start, baseline, warmup, end, peak - baseline, bound_mib);
    CHECK(peak - baseline <= bound_mib, "RSS grew %.1f MiB after the warm-up (bound %.1f MiB)", peak - baseline, bound_mib);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s BUNDLE_DIR SHORT_BUNDLE_DIR VIDEO LEAK_SOURCE SCRATCH_DIR LEAK_ITERATIONS LEAK_BOUND_MIB\n",
                argv[0]);
        return 2;
    }
    const char *bundle = argv[1], *short_bundle = argv[2], *video = argv[3], *leak_source = argv[4], *scratch = argv[5];
    int iterations = atoi(argv[6]);
    double bound_mib = atof(argv[7]);
    setvbuf(stdout, NULL, _IONBF, 0);

    check_basics();
    Loc3rModel *model = check_open(bundle, scratch);
    if (model == NULL) {
        fprintf(stderr, "cannot go on without a model\n");
        return 1;
    }
    Loc3rScene *video_scene = check_observe(model, video, scratch);
    if (video_scene != NULL) {
        check_localize(video_scene);
        check_ask(video_scene);
        check_push_onto_video(video_scene);
    }
    Loc3rScene *live_scene = check_live(model);
    check_threads(live_scene);
    check_context_full(short_bundle);
    check_freed(model, video_scene, live_scene);
    check_leaks(bundle, leak_source, iterations, bound_mib);

    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}

/* where_am_i BUNDLE_DIR VIDEO [QUESTION]: observe a video once, then "where am I?" and a
 * question answered token by token, through the C ABI of loc3r. */
#include "loc3r.h"

#include <stdio.h>

/* Every call returns a status; on failure loc3r_last_error() says what was wrong. */
#define TRY(call)                                                                                      \
    do {                                                                                               \
        Loc3rStatus status_ = (call);                                                                  \
        if (status_ != LOC3R_OK) {                                                                     \
            fprintf(stderr, "%s: %s\n", loc3r_status_name((int)status_), loc3r_last_error());          \
            return 1;                                                                                  \
        }                                                                                              \
    } while (0)

static int print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 1; /* 0 would stop the answer here */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s BUNDLE_DIR VIDEO [QUESTION]\n", argv[0]);
        return 2;
    }
    Loc3rModel *model = NULL;
    Loc3rScene *scene = NULL;
    Loc3rAnswer *answer = NULL;
    Loc3rPose pose;
    const char *situation = "I am standing in front of the yellow lamp";
    TRY(loc3r_open(argv[1], "cpu", NULL, &model));
    TRY(loc3r_observe_video(model, argv[2], 16, &scene));
    TRY(loc3r_localize(scene, situation, &pose));
    printf("x=%.2f m y=%.2f m (sigma %.2f, %.2f) yaw=%.0f deg%s\n", pose.x, pose.y, pose.sigma_x, pose.sigma_y,
           pose.yaw_deg, pose.orientation_confident ? "" : " (orientation not confident)");

    Loc3rAskOptions options;
    TRY(loc3r_ask_options_default(&options));
    options.max_new_tokens = 32;
    TRY(loc3r_ask(scene, situation, argc > 3 ? argv[3] : "what is on my left?", &options, print_piece, NULL, &answer));
    printf("\n(%u tokens, first after %.0f ms)\n", answer->generated_tokens, answer->first_token_ms);

    loc3r_answer_free(answer);
    loc3r_scene_free(scene);
    loc3r_close(model);
    return 0;
}

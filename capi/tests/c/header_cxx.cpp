// The header from C++: it must compile and link (declarations inside extern "C"), and the
// RAII pattern docs/ros2-node.md uses must work.
#include "loc3r.h"

#include <cstdio>
#include <cstring>
#include <memory>

namespace {
struct SceneFree {
    void operator()(Loc3rScene *scene) const { loc3r_scene_free(scene); }
};
}  // namespace

int main() {
    // The free functions work as deleters, by function object or by pointer.
    std::shared_ptr<Loc3rScene> shared(nullptr, loc3r_scene_free);
    shared.reset();
    std::unique_ptr<Loc3rScene, SceneFree> scene;
    Loc3rPose pose{};
    if (loc3r_localize(scene.get(), nullptr, &pose) != LOC3R_INVALID_ARGUMENT ||
        std::strstr(loc3r_last_error(), "`scene` is NULL") == nullptr) {
        std::fprintf(stderr, "a NULL scene was not refused: %s\n", loc3r_last_error());
        return 1;
    }
    std::printf("C++: loc3r %s\n", loc3r_version());
    return 0;
}

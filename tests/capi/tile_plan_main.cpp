// Prints the native library's default tile plans, for tests/capi/test_native.py to compare with Python's.
// Compiled from tests/capi together with fcn_deploy/capi/native/tile_plan.cpp (no OpenVINO needed).
//
// Reads lines "HEIGHT WIDTH ALIGNMENT MIN_BATCH MAX_BATCH MIN_H MIN_W MAX_H MAX_W" from stdin and prints one
// line per plan: "TILE_H TILE_W BATCH ys Y0 Y1 ... xs X0 X1 ..." (or "error MESSAGE").
#include <iostream>
#include <stdexcept>

#include "tile_plan.hpp"

int main() {
    int height, width;
    fcn::PlanLimits limits;
    while (std::cin >> height >> width >> limits.alignment >> limits.min_batch >> limits.max_batch >>
           limits.smallest.height >> limits.smallest.width >> limits.largest.height >> limits.largest.width) {
        try {
            const fcn::TilePlan plan = fcn::default_plan({height, width}, limits);
            std::cout << plan.tile.height << ' ' << plan.tile.width << ' ' << plan.batch << " ys";
            for (int y : plan.ys) std::cout << ' ' << y;
            std::cout << " xs";
            for (int x : plan.xs) std::cout << ' ' << x;
            std::cout << '\n';
        } catch (const std::invalid_argument& exc) {
            std::cout << "error " << exc.what() << '\n';
        }
    }
    return 0;
}

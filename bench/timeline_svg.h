// SVG timeline of a combine (single-GPU or multi-GPU) from its %globaltimer stamps
// (combine_timeline_entries layout: per counter [signal observed, rows sent (multi-GPU) or recorded
// in place (single-GPU)], then per block [start, send or record phase done, end]). One panel per GPU, stacked; each panel's time axis starts at its
// own first block start, as %globaltimer is not synchronized across GPUs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "signalgemm/signals.h"

namespace signalgemm::bench {

struct TimelinePanel {
  std::string label;            // e.g. "GPU 0"; empty for a single panel
  std::vector<uint64_t> stamps;  // combine_timeline_entries(layout, blocks) entries
  SignalLayout layout;
  int blocks = 0;
};

inline void write_timeline_svg(const char* path, const std::string& title, const std::vector<TimelinePanel>& panels,
                               const std::string& footer = "") {
  struct Span {
    uint64_t t0 = UINT64_MAX, t1 = 0;
    int64_t used = 0;
  };
  std::vector<Span> spans(panels.size());
  double us = 0;
  int rows_total = 0;
  for (size_t p = 0; p < panels.size(); ++p) {
    const auto& tl = panels[p].stamps;
    const int64_t counters = panels[p].layout.counter_count();
    for (int b = 0; b < panels[p].blocks; ++b) {
      if (tl[2 * counters + 3 * b] == 0) continue;  // a block that never ran (not in this launch set)
      spans[p].t0 = std::min(spans[p].t0, tl[2 * counters + 3 * b]);
      spans[p].t1 = std::max(spans[p].t1, tl[2 * counters + 3 * b + 2]);
    }
    spans[p].used = std::count_if(tl.begin(), tl.begin() + 2 * counters, [](uint64_t x) { return x != 0; }) / 2;
    us = std::max(us, (spans[p].t1 - spans[p].t0) / 1000.0);
    rows_total += int(spans[p].used + panels[p].blocks + 6);
  }
  const int width = 1000, row_h = 6, top = 40;
  const int height = top + rows_total * row_h + 40;
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) return;
  std::fprintf(f,
               "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='monospace' "
               "font-size='11'>\n<rect width='100%%' height='100%%' fill='white'/>\n",
               width, height);
  std::fprintf(f, "<text x='10' y='16'>%s (%.1f us)</text>\n", title.c_str(), us);
  std::fprintf(f, "<text x='10' y='32' fill='#1f77b4'>| signal observed, bar: rows handed to their token slots</text>\n");
  int row = 0;
  for (size_t p = 0; p < panels.size(); ++p) {
    const auto& tl = panels[p].stamps;
    const int64_t counters = panels[p].layout.counter_count();
    const uint64_t t0 = spans[p].t0;
    auto x = [&](uint64_t t) { return 60 + (t > t0 ? t - t0 : 0) / 1000.0 / us * (width - 80); };
    if (!panels[p].label.empty()) {
      std::fprintf(f, "<text x='10' y='%d' font-weight='bold'>%s</text>\n", top + row * row_h + 8,
                   panels[p].label.c_str());
      row += 2;
    }
    for (int64_t c = 0; c < counters; ++c) {
      if (tl[2 * c] == 0) continue;
      const double y = top + row++ * row_h;
      std::fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%d' fill='#1f77b4'/>\n", x(tl[2 * c]), y,
                   std::max(1.0, x(tl[2 * c + 1]) - x(tl[2 * c])), row_h - 1);
    }
    row += 1;
    std::fprintf(f,
                 "<text x='10' y='%d' fill='#d62728'>combine blocks: send or record phase (orange), reduce phase (red)</text>\n",
                 top + row * row_h);
    row += 1;
    for (int b = 0; b < panels[p].blocks; ++b) {
      const uint64_t* bt = &tl[2 * counters + 3 * b];
      const double y = top + row++ * row_h;
      if (bt[0] == 0) continue;
      std::fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%d' fill='#ff7f0e'/>\n", x(bt[0]), y,
                   x(bt[1]) - x(bt[0]), row_h - 1);
      std::fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%d' fill='#d62728'/>\n", x(bt[1]), y,
                   std::max(1.0, x(bt[2]) - x(bt[1])), row_h - 1);
    }
    row += 2;
  }
  std::fprintf(f, "<text x='60' y='%d'>0 us</text><text x='%d' y='%d'>%.0f us</text>\n", height - 10, width - 80,
               height - 10, us);
  if (!footer.empty()) std::fprintf(f, "<text x='160' y='%d'>%s</text>\n", height - 10, footer.c_str());
  std::fprintf(f, "</svg>\n");
  std::fclose(f);
}

}  // namespace signalgemm::bench

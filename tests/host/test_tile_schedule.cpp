// The masked tile enumeration and the expected signal values, on the CPU. The device scheduler
// runs the same MaskedTileWalker, so what holds here holds in the kernel.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "signalgemm/detail/tile_schedule.h"
#include "signalgemm/signals.h"

namespace signalgemm {
namespace {

using detail::MaskedTileWalker;
using detail::Tile;

SignalLayout make_layout(int experts, int max_m, int n, int block_m, SignalGranularity g) {
  return SignalLayout{experts, max_m, n, block_m, 128, g};
}

// Every tile of every CTA, in visiting order per CTA.
std::vector<std::vector<Tile>> walk_all(const SignalLayout& layout, const std::vector<int32_t>& masked_m, int ctas) {
  std::vector<std::vector<Tile>> per_cta(ctas);
  for (int c = 0; c < ctas; ++c) {
    MaskedTileWalker<const int32_t*> walker(layout, masked_m.data(), c, ctas);
    Tile t;
    while (walker.next(t)) per_cta[c].push_back(t);
  }
  return per_cta;
}

TEST(TileSchedule, CoversExactlyTheRealTilesOnce) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    const int experts = 1 + rng() % 40;
    const int max_m = 1 + rng() % 300;
    const int n = 8 * (1 + rng() % 100);
    const int block_m = (trial % 3 == 0) ? 32 : (trial % 3 == 1 ? 64 : 128);
    const int ctas = 1 + rng() % 140;
    std::vector<int32_t> masked_m(experts);
    for (auto& m : masked_m) m = rng() % 5 == 0 ? 0 : int(rng() % (max_m + 1));
    const SignalLayout layout = make_layout(experts, max_m, n, block_m, SignalGranularity::per_expert);

    std::set<std::tuple<int, int, int>> seen;
    for (const auto& tiles : walk_all(layout, masked_m, ctas))
      for (const Tile& t : tiles) {
        ASSERT_TRUE(seen.insert({t.expert, t.m_block, t.n_block}).second) << "tile visited twice";
        ASSERT_LT(t.first_row, masked_m[t.expert]) << "tile of padding rows";
        ASSERT_LT(t.n_block * 128, n);
      }
    size_t expected_tiles = 0;
    for (int m : masked_m) expected_tiles += size_t((m + block_m - 1) / block_m) * ((n + 127) / 128);
    EXPECT_EQ(seen.size(), expected_tiles);
  }
}

TEST(TileSchedule, ExpertMajorWithRowBlocksInnermost) {
  const std::vector<int32_t> masked_m = {130, 0, 5};
  const SignalLayout layout = make_layout(3, 256, 256, 64, SignalGranularity::per_expert);
  const auto tiles = walk_all(layout, masked_m, 1)[0];
  const std::vector<std::tuple<int, int, int>> expected = {
      {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {0, 0, 1}, {0, 1, 1}, {0, 2, 1}, {2, 0, 0}, {2, 0, 1}};
  ASSERT_EQ(tiles.size(), expected.size());
  for (size_t i = 0; i < tiles.size(); ++i)
    EXPECT_EQ(std::make_tuple(tiles[i].expert, tiles[i].m_block, tiles[i].n_block), expected[i]) << "tile " << i;
}

TEST(TileSchedule, BalancedToOneTileAcrossCtas) {
  const std::vector<int32_t> masked_m = {33, 64, 1, 200, 0, 17, 64, 128};
  const SignalLayout layout = make_layout(8, 256, 7168, 64, SignalGranularity::per_expert);
  const auto per_cta = walk_all(layout, masked_m, 132);
  size_t lo = SIZE_MAX, hi = 0;
  for (const auto& tiles : per_cta) {
    lo = std::min(lo, tiles.size());
    hi = std::max(hi, tiles.size());
  }
  EXPECT_LE(hi - lo, 1u);
}

// Dynamic scheduling: CTAs take tile numbers from one counter in any interleaving; each CTA's
// numbers only grow, and at() then yields exactly the tiles a single walker visits, in its order.
TEST(TileSchedule, DynamicTicketsCoverTheSameTilesInOrder) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 100; ++trial) {
    const int experts = 1 + rng() % 20;
    const int max_m = 1 + rng() % 300;
    const SignalLayout layout = make_layout(experts, max_m, 8 * (1 + rng() % 60), 64, SignalGranularity::per_expert);
    std::vector<int32_t> masked_m(experts);
    for (auto& m : masked_m) m = rng() % 4 == 0 ? 0 : int(rng() % (max_m + 1));
    const std::vector<Tile> in_order = walk_all(layout, masked_m, 1)[0];

    const int ctas = 1 + rng() % 12;
    std::vector<MaskedTileWalker<const int32_t*>> walkers;
    for (int c = 0; c < ctas; ++c) walkers.emplace_back(layout, masked_m.data(), c, ctas);
    std::vector<bool> done(ctas, false);
    std::vector<Tile> by_ticket;
    for (int ticket = 0, live = ctas; live > 0; ++ticket) {
      int c = int(rng() % ctas);
      while (done[c]) c = (c + 1) % ctas;
      Tile t;
      if (walkers[c].at(ticket, t)) {
        by_ticket.push_back(t);
      } else {
        done[c] = true;
        --live;
      }
    }
    ASSERT_EQ(by_ticket.size(), in_order.size());
    for (size_t i = 0; i < in_order.size(); ++i)
      EXPECT_EQ(std::make_tuple(by_ticket[i].expert, by_ticket[i].m_block, by_ticket[i].n_block, by_ticket[i].rows),
                std::make_tuple(in_order[i].expert, in_order[i].m_block, in_order[i].n_block, in_order[i].rows));
  }
}

TEST(TileSchedule, ClampsOutOfRangeMaskedM) {
  const std::vector<int32_t> masked_m = {-5, 1000};
  const SignalLayout layout = make_layout(2, 100, 128, 64, SignalGranularity::per_expert);
  const auto tiles = walk_all(layout, masked_m, 3);
  int count = 0;
  for (const auto& cta : tiles)
    for (const Tile& t : cta) {
      EXPECT_EQ(t.expert, 1);
      EXPECT_LE(t.first_row + t.rows, 100);
      ++count;
    }
  EXPECT_EQ(count, 2);  // ceil(100 / 64) row blocks x 1 column block
}

// Row blocks: ceil(m / block_m) of them per expert and column block (the count the signals are built
// on), together covering rows [0, m) once, starting at multiples of 32 rows, with MMA widths (rows
// rounded up to 32) that sum to m rounded up to 32 and differ by at most 32 (block_m a multiple of
// 32); aligned blocks of block_m rows for per_row_block, whose counters cover those.
TEST(TileSchedule, RowBlocksCoverEachRowOnceEvenlyExceptPerRowBlock) {
  std::mt19937 rng(2857);
  for (SignalGranularity g :
       {SignalGranularity::none, SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    for (int trial = 0; trial < 200; ++trial) {
      const int experts = 1 + rng() % 12;
      const int max_m = 1 + rng() % (trial % 10 == 0 ? 5000 : 700);
      const int block_m = std::vector<int>{32, 48, 64, 128, 192}[rng() % 5];
      const SignalLayout layout = make_layout(experts, max_m, 8 * (1 + rng() % 40), block_m, g);
      std::vector<int32_t> masked_m(experts);
      for (auto& m : masked_m) m = rng() % 5 == 0 ? 0 : int(rng() % (max_m + 1));
      std::map<std::pair<int, int>, std::vector<int>> row_hits;  // (expert, n_block) -> hits per row
      std::map<std::pair<int, int>, int> widths;                 // (expert, n_block) -> sum of MMA widths
      std::map<int, std::pair<int, int>> width_range;            // expert -> (narrowest, widest) block
      for (int e = 0; e < experts; ++e) width_range[e] = {1 << 30, 0};
      for (const auto& tiles : walk_all(layout, masked_m, 1 + rng() % 9))
        for (const Tile& t : tiles) {
          const int m = masked_m[t.expert];
          ASSERT_GE(t.rows, 1);
          ASSERT_LE(t.rows, block_m);
          ASSERT_LE(t.first_row + t.rows, m);
          ASSERT_TRUE(t.first_row == t.m_block * block_m || t.first_row % 32 == 0)
              << "MMA width steps; token scales' TMA boxes start 16-byte aligned";
          if (g == SignalGranularity::per_row_block) ASSERT_EQ(t.first_row, t.m_block * block_m);
          const int width = (t.rows + 31) / 32 * 32;
          widths[{t.expert, t.n_block}] += width;
          auto& range = width_range[t.expert];
          range = {std::min(range.first, width), std::max(range.second, width)};
          auto& hits = row_hits[{t.expert, t.n_block}];
          hits.resize(m);
          for (int r = t.first_row; r < t.first_row + t.rows; ++r) ++hits[r];
        }
      for (int e = 0; e < experts; ++e)
        for (int nb = 0; nb < layout.col_blocks() && masked_m[e] > 0; ++nb) {
          const auto& hits = row_hits[{e, nb}];
          ASSERT_EQ(int(hits.size()), masked_m[e]);
          if (block_m % 32 == 0) ASSERT_EQ((widths[{e, nb}]), (masked_m[e] + 31) / 32 * 32);
          if (block_m % 32 == 0 && g != SignalGranularity::per_row_block)
            ASSERT_LE(width_range[e].second - width_range[e].first, 32) << "expert " << e << " m " << masked_m[e];
          for (int r = 0; r < masked_m[e]; ++r) ASSERT_EQ(hits[r], 1) << "expert " << e << " row " << r;
        }
    }
  }
  // An expert one row past two blocks: three blocks of 96, 96 and 65 rows (not 128, 128 and 1);
  // with 300 rows 128, 96 and 76 (not 128, 128 and 44); with 900 rows five of 128, two of 96 and
  // one of 68 (not seven of 128 and one of 4).
  const struct {
    int m;
    std::vector<int> rows;
  } cases[] = {{257, {96, 96, 65}}, {300, {128, 96, 76}}, {900, {128, 128, 128, 128, 128, 96, 96, 68}}};
  for (const auto& c : cases) {
    const SignalLayout layout = make_layout(1, c.m, 128, 128, SignalGranularity::per_expert);
    const auto tiles = walk_all(layout, {c.m}, 1)[0];
    ASSERT_EQ(tiles.size(), c.rows.size()) << c.m;
    for (size_t i = 0, row = 0; i < tiles.size(); row += c.rows[i], ++i) {
      EXPECT_EQ(tiles[i].first_row, int(row)) << c.m;
      EXPECT_EQ(tiles[i].rows, c.rows[i]) << c.m;
    }
  }
}

// Two-CTA clusters: the units of all clusters cover the same tiles as MaskedTileWalker, once each;
// both ranks of a unit see the same expert and share mode, and the shared operand is the same
// block (weights: one n_block, tokens: one m_block); only a lone tile leaves rank 1 idle.
TEST(PairedTileSchedule, CoversExactlyTheRealTilesOnceWithSharedOperands) {
  using detail::ClusterShare;
  using detail::ClusterWork;
  using detail::PairedTileWalker;
  std::mt19937 rng(4321);
  for (int trial = 0; trial < 300; ++trial) {
    const int experts = 1 + rng() % 20;
    const int max_m = 1 + rng() % 700;
    const int n = 8 * (1 + rng() % 120);
    const int block_m = 128;
    const int clusters = 1 + rng() % 70;
    std::vector<int32_t> masked_m(experts);
    for (auto& m : masked_m) m = rng() % 6 == 0 ? 0 : int(rng() % (max_m + 1));
    if (trial % 7 == 0) masked_m[0] = max_m + 50;  // clamped like the single-CTA walker
    SignalLayout layout = make_layout(experts, max_m, n, block_m, SignalGranularity::per_expert);
    layout.block_n = 256;

    std::set<std::tuple<int, int, int>> seen;
    size_t idle = 0;
    for (int c = 0; c < clusters; ++c) {
      PairedTileWalker<const int32_t*> rank0(layout, masked_m.data(), c, clusters, 0);
      PairedTileWalker<const int32_t*> rank1(layout, masked_m.data(), c, clusters, 1);
      ClusterWork w0, w1;
      while (true) {
        const bool more0 = rank0.next(w0), more1 = rank1.next(w1);
        ASSERT_EQ(more0, more1) << "the ranks of a cluster walk the same units";
        if (!more0) break;
        ASSERT_EQ(w0.share, w1.share);
        ASSERT_EQ(w0.tile.expert, w1.tile.expert);
        ASSERT_TRUE(w0.has_tile);
        if (w0.share == ClusterShare::weights) EXPECT_EQ(w0.tile.n_block, w1.tile.n_block);
        if (w0.share == ClusterShare::tokens) EXPECT_EQ(w0.tile.m_block, w1.tile.m_block);
        if (w0.share == ClusterShare::none) {
          EXPECT_FALSE(w1.has_tile);
          ++idle;
        }
        for (const ClusterWork* w : {&w0, &w1}) {
          if (!w->has_tile) continue;
          const Tile& t = w->tile;
          ASSERT_TRUE(seen.insert({t.expert, t.m_block, t.n_block}).second) << "tile visited twice";
          const int m = layout.clamp_m(masked_m[t.expert]);
          ASSERT_LT(t.first_row, m) << "tile of padding rows";
          const detail::RowSplit split = detail::split_rows(layout, m);
          EXPECT_EQ(t.first_row, split.first_row(t.m_block));
          EXPECT_EQ(t.rows, split.rows(t.m_block, m));
          ASSERT_LT(t.n_block * 256, n);
        }
      }
    }
    size_t expected_tiles = 0, lone_tiles = 0;
    for (int m : masked_m) {
      const int r = layout.row_blocks(m), cols = layout.col_blocks();
      expected_tiles += size_t(r) * cols;
      lone_tiles += (r % 2) * (cols % 2);
    }
    EXPECT_EQ(seen.size(), expected_tiles);
    EXPECT_EQ(idle, lone_tiles) << "only an odd row block in an odd last column runs alone";
  }
}

// The counters the kernel bumps (one add per tile) end exactly at expected().
TEST(Signals, ExpectedMatchesOneAddPerTile) {
  std::mt19937 rng(99);
  for (SignalGranularity g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    for (int trial = 0; trial < 100; ++trial) {
      const int experts = 1 + rng() % 33;
      const int max_m = 1 + rng() % 260;
      const int n = 8 * (1 + rng() % 64);
      const int block_m = 32 << (rng() % 3);
      std::vector<int32_t> masked_m(experts);
      for (auto& m : masked_m) m = int(rng() % (max_m + 1));
      masked_m[0] = 0;
      masked_m[experts - 1] = max_m;
      const SignalLayout layout = make_layout(experts, max_m, n, block_m, g);
      std::vector<uint32_t> counters(layout.counter_count(), 0);
      for (const auto& cta : walk_all(layout, masked_m, 1 + rng() % 100))
        for (const Tile& t : cta) ++counters.at(layout.counter_index(t.expert, t.m_block));
      for (int e = 0; e < experts; ++e) {
        if (g == SignalGranularity::per_expert) {
          EXPECT_EQ(counters[e], layout.expected(masked_m[e]));
          EXPECT_EQ(layout.covered_rows(masked_m[e], 0), masked_m[e]);
        } else {
          for (int rb = 0; rb < layout.row_blocks_per_expert(); ++rb)
            EXPECT_EQ(counters[layout.counter_index(e, rb)], layout.expected(masked_m[e], rb));
        }
      }
    }
  }
}

TEST(Signals, ZeroRowsMeansNothingToWaitFor) {
  const SignalLayout pe = make_layout(4, 64, 256, 64, SignalGranularity::per_expert);
  EXPECT_EQ(pe.expected(0), 0u);
  EXPECT_EQ(pe.expected(1), 2u);
  EXPECT_EQ(pe.expected(64), 2u);
  EXPECT_EQ(pe.counter_count(), 4);
  const SignalLayout prb = make_layout(4, 100, 256, 32, SignalGranularity::per_row_block);
  EXPECT_EQ(prb.counter_count(), 16);  // ceil(100 / 32) = 4 per expert
  EXPECT_EQ(prb.expected(33, 0), 2u);
  EXPECT_EQ(prb.expected(33, 1), 2u);
  EXPECT_EQ(prb.expected(33, 2), 0u);
  EXPECT_EQ(prb.covered_rows(33, 1), 1);
  EXPECT_EQ(prb.covered_rows(33, 0), 32);
  EXPECT_EQ(prb.covered_rows(33, 2), 0);
  EXPECT_EQ(prb.expected(500, 3), 2u);  // clamped to max_m = 100: 4 row blocks
}

// Extents near INT32_MAX (signal_layout() is public and may be called without validation): the
// rounded-up block counts must not overflow.
TEST(Signals, BlockCountsOfExtentsNearInt32Max) {
  SignalLayout layout;
  layout.num_experts = 2;
  layout.max_m = 2147483647;
  layout.n = 2147483647;
  layout.block_m = 32;
  layout.block_n = 128;
  layout.granularity = SignalGranularity::per_row_block;
  EXPECT_EQ(layout.col_blocks(), 16777216);
  EXPECT_EQ(layout.row_blocks_per_expert(), 67108864);
  EXPECT_EQ(layout.row_blocks(2147483647), 67108864);
  EXPECT_EQ(layout.counter_count(), int64_t(2) * 67108864);
  EXPECT_EQ(layout.expected(2147483647, 67108863), 16777216u);
}

}  // namespace
}  // namespace signalgemm

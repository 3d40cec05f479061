// Generated from fastgsl/ops/voxel_stats/layout.py by `python -m fastgsl.ops.voxel_stats.layout`: do not
// edit. The (B, C, NK) statistics layout and the argument codes of kernels/voxel_stats_host.cpp.
#pragma once

constexpr int NK = 10;  // stats per (b, c)
enum { S_I = 0, S_SP = 1, S_SP2 = 2, S_ST = 3, S_ST2 = 4, S_CE = 5, S_SURF = 6, S_D2 = 7, S_DP = 8, S_HAUS = 9 };
enum { ACT_SOFTMAX = 0, ACT_SIGMOID = 1, ACT_NONE = 2 };
enum { Z_F32 = 0, Z_F16 = 1, Z_BF16 = 2 };
enum { T_F32 = 0, T_I64 = 1, T_I32 = 2, T_U8 = 3 };
#define FASTGSL_STATS_LAYOUT "I,SP,SP2,ST,ST2,CE,SURF,D2,DP,HAUS;softmax,sigmoid,none;float32,float16,bfloat16;float32,int64,int32,uint8"
// The stat sets with builds of their own (COMPILED_NEEDS): X(forward mask) and, deduplicated, Y(gradient mask)
#define FASTGSL_STATS_NEED_LIST X(53) X(245) X(309) X(565) X(43) X(235) X(299) X(555)
#define FASTGSL_STATS_GRAD_NEED_LIST Y(37) Y(101) Y(293) Y(549) Y(35) Y(99) Y(291) Y(547)

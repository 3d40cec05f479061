// Generated from fastgsl/ops/voxel_stats/layout.py by `python -m fastgsl.ops.voxel_stats.layout`: do not
// edit. The (B, C, NK) statistics layout and the argument codes of kernels/voxel_stats_host.cpp.
#pragma once

constexpr int NK = 10;  // stats per (b, c)
enum { S_I = 0, S_SP = 1, S_SP2 = 2, S_ST = 3, S_ST2 = 4, S_CE = 5, S_SURF = 6, S_D2 = 7, S_DP = 8, S_HAUS = 9 };
enum { ACT_SOFTMAX = 0, ACT_SIGMOID = 1, ACT_NONE = 2 };
enum { Z_F32 = 0, Z_F16 = 1, Z_BF16 = 2 };
enum { T_F32 = 0, T_I64 = 1, T_I32 = 2, T_U8 = 3 };
#define FASTGSL_STATS_LAYOUT "I,SP,SP2,ST,ST2,CE,SURF,D2,DP,HAUS;softmax,sigmoid,none;float32,float16,bfloat16;float32,int64,int32,uint8"

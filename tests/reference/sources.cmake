# CPU reference tests, included by tests/CMakeLists.txt; paths are relative to tests/.
set(SIGNALGEMM_REFERENCE_TEST_SOURCES
  reference/test_formats.cpp
  reference/test_quantize.cpp
  reference/test_gemm_reference.cpp
  reference/test_scale_layouts.cpp
  reference/test_mma_fragments.cpp)

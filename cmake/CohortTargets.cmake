# Shared compile settings for every cohort target.
add_library(cohort_options INTERFACE)
target_compile_options(cohort_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-Wall>)
target_include_directories(cohort_options INTERFACE ${PROJECT_SOURCE_DIR})
if(COHORT_HAVE_CUDA)
  target_compile_definitions(cohort_options INTERFACE COHORT_WITH_CUDA=1)
endif()
if(COHORT_DEBUG_SYNC)
  target_compile_definitions(cohort_options INTERFACE COHORT_DEBUG_SYNC=1)
endif()
if(COHORT_SANITIZE)
  target_compile_options(cohort_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer>)
  target_link_options(cohort_options INTERFACE -fsanitize=address,undefined)
endif()

# cohort_sources(<out-var> <dir>): the C++ sources of a folder, and its .cu files
# when the CUDA backend is built. Files named *_cuda.cpp are CUDA-only host code.
function(cohort_sources out dir)
  file(GLOB _cpp CONFIGURE_DEPENDS ${dir}/*.cpp)
  if(NOT COHORT_HAVE_CUDA)
    list(FILTER _cpp EXCLUDE REGEX "_cuda\\.cpp$")
    set(_cu "")
  else()
    file(GLOB _cu CONFIGURE_DEPENDS ${dir}/*.cu)
  endif()
  set(${out} ${_cpp} ${_cu} PARENT_SCOPE)
endfunction()

# cohort_cuda_sources(<out-var> <dir>): every .cpp and .cu of a CUDA-only folder
# (core/cuda, core/ops/cuda), or nothing in a CPU-only build.
function(cohort_cuda_sources out dir)
  set(_all "")
  if(COHORT_HAVE_CUDA)
    file(GLOB _all CONFIGURE_DEPENDS ${dir}/*.cpp ${dir}/*.cu)
  endif()
  set(${out} ${_all} PARENT_SCOPE)
endfunction()

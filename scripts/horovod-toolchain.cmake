# Horovod 0.28.1 forces C++14, but torch >= 2.1 headers need C++17. GCC honours the last
# -std flag, so compile every C++ object with -std=c++17 after Horovod's own flags.
set(CMAKE_CXX_COMPILE_OBJECT "<CMAKE_CXX_COMPILER> <DEFINES> <INCLUDES> <FLAGS> -std=c++17 -o <OBJECT> -c <SOURCE>")

# Compiler flags shared by every target of the project.
add_library(tryon_flags INTERFACE)
target_compile_options(tryon_flags INTERFACE
  -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes
  -Wvla -Wformat=2 -Wno-unused-parameter -Wno-missing-field-initializers)
target_compile_definitions(tryon_flags INTERFACE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
if(TRYON_WERROR)
  target_compile_options(tryon_flags INTERFACE -Werror)
endif()
if(TRYON_SANITIZE)
  target_compile_options(tryon_flags INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(tryon_flags INTERFACE -fsanitize=address,undefined)
endif()

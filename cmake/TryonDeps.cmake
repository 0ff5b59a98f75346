# Dependencies come from Debian 12 packages, found through pkg-config.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET libcrypto)
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
# Uploaded photos: libvips decodes and re-encodes them, libmagic tells their type from the
# bytes (Debian 12 ships libmagic.pc). Imported targets make their headers SYSTEM
# includes, so GLib's headers never meet -Werror.
pkg_check_modules(VIPS REQUIRED IMPORTED_TARGET vips)
pkg_check_modules(MAGIC REQUIRED IMPORTED_TARGET libmagic)

// The libtorch rpath set-up every crate that links libtorch shares (see shared/build.rs).
include!("../shared/build.rs");

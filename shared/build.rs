// Embed the real libtorch folder as an rpath so the binaries and tests run with no
// LD_LIBRARY_PATH. torch-sys (a direct dependency of every crate that links libtorch: here only
// with the feature `torch`) exports its lib folder as DEP_TCH_LIBTORCH_LIB. The extractor and
// temporal build scripts include this file.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // The lib folder holds links into the venv; the real files' folder also has their deps.
        let probe = std::path::Path::new(&lib).join("libtorch_cpu.so");
        let real = std::fs::canonicalize(&probe)
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
            .unwrap_or_else(|| std::path::PathBuf::from(&lib));
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", real.display());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-link-arg=-Wl,--allow-shlib-undefined");
    }
}

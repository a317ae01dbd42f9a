//! A weight matrix pre-packed for MKL's GEMM, for the recurrent product of an RNN layer in
//! evaluation.
//!
//! What it does: [`PackedWeight::pack`] lays out `W [N, K]` once for `y += a Wᵀ` with a fixed
//! number of rows `M` of `a` (`cblas_sgemm_pack`), and [`PackedWeight::addmm_`] runs that product
//! on it (`cblas_sgemm_compute`). This is what ATen's own `_mkl_linear` does with a weight from
//! `_mkl_reorder_linear_weight`; tch does not expose those two operators, so the MKL functions are
//! called directly, looked up at run time in the process (libtorch's x86-64 builds carry MKL and
//! export them). A recurrent layer multiplies `B` = 8 rows by its 12–16 MB `W_hh` at every frame:
//! a product that reads the whole weight for very little arithmetic, which the packed layout
//! reads faster than ATen's `linear` (MKL's general GEMM on `Wᵀ`) does (measured figures: the
//! README's speed section).
//!
//! What it does not: take part in autograd (the product reads raw buffers), or exist where MKL
//! is absent (`pack` then returns `None` and callers use `addmm`), or run on CUDA.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

// CBLAS enumerations, as in MKL's mkl_cblas.h.
const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
const PACKED: c_int = 151;
const B_MATRIX: c_int = 162;

type PackGetSize = unsafe extern "C" fn(c_int, c_int, c_int, c_int) -> usize;
type Pack = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *mut f32,
);
type Compute = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

/// MKL's packed-GEMM entry points (LP64: 32-bit integers).
struct Mkl {
    get_size: PackGetSize,
    pack: Pack,
    compute: Compute,
}

/// The entry points, if this process has them (looked up once).
fn mkl() -> Option<&'static Mkl> {
    static MKL: OnceLock<Option<Mkl>> = OnceLock::new();
    MKL.get_or_init(|| {
        let find = |name: &std::ffi::CStr| {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the
            // process's symbol tables.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let (get_size, pack, compute) = (
            find(c"cblas_sgemm_pack_get_size")?,
            find(c"cblas_sgemm_pack")?,
            find(c"cblas_sgemm_compute")?,
        );
        // SAFETY: the symbols are MKL's functions of these C signatures (mkl_cblas.h, LP64).
        unsafe {
            Some(Mkl {
                get_size: std::mem::transmute::<*mut c_void, PackGetSize>(get_size),
                pack: std::mem::transmute::<*mut c_void, Pack>(pack),
                compute: std::mem::transmute::<*mut c_void, Compute>(compute),
            })
        }
    })
    .as_ref()
}

/// True when MKL's packed GEMM is available in this process.
pub fn available() -> bool {
    mkl().is_some()
}

/// `W [N, K]` packed for products with `M`-row matrices (see the module documentation).
#[derive(Debug)]
pub struct PackedWeight {
    m: i64,
    n: i64,
    k: i64,
    /// MKL's packed layout in a 64-byte aligned libtorch buffer.
    buf: Tensor,
}

impl PackedWeight {
    /// Packs `w [N, K]` (float, CPU) for `a [m, K]`; `None` where MKL is absent, the tensor is
    /// not a CPU float matrix, or a size does not fit MKL's 32-bit integers.
    pub fn pack(w: &Tensor, m: i64) -> Option<PackedWeight> {
        let mkl = mkl()?;
        if w.device() != Device::Cpu || w.kind() != Kind::Float || w.dim() != 2 || m < 1 {
            return None;
        }
        let (n, k) = (w.size()[0], w.size()[1]);
        let [mi, ni, ki] = [m, n, k].map(|v| c_int::try_from(v).ok());
        let (mi, ni, ki) = (mi?, ni?, ki?);
        let w = w.detach().contiguous();
        // SAFETY: plain sizes in, a byte count out.
        let bytes = unsafe { (mkl.get_size)(B_MATRIX, mi, ni, ki) };
        let buf = Tensor::empty([bytes as i64], (Kind::Uint8, Device::Cpu));
        // SAFETY: `w` is a contiguous row-major [n, k] float matrix (leading dimension k) that
        // outlives the call, and `buf` holds the `bytes` MKL asked for.
        unsafe {
            (mkl.pack)(
                ROW_MAJOR,
                B_MATRIX,
                TRANS,
                mi,
                ni,
                ki,
                1.0,
                w.data_ptr() as *const f32,
                ki,
                buf.data_ptr() as *mut f32,
            );
        }
        Some(PackedWeight { m, n, k, buf })
    }

    /// The rows `M` this weight was packed for.
    pub fn rows(&self) -> i64 {
        self.m
    }

    /// `out += a Wᵀ` in place, where `a [M, K]` is contiguous and `out` is `[M, N]` with rows
    /// of stride `out.stride()[0]` and contiguous columns (a row-strided view, such as the
    /// frame `t` slice `gates[:, t]` of `[B, L, N]`, is written in place).
    ///
    /// # Panics
    /// If a shape, kind, device or layout differs from the above.
    pub fn addmm_(&self, out: &mut Tensor, a: &Tensor) {
        let mkl = mkl().expect("a PackedWeight exists only where MKL does");
        assert_eq!(a.size(), [self.m, self.k], "packed GEMM: input shape");
        assert_eq!(out.size(), [self.m, self.n], "packed GEMM: output shape");
        for t in [&*out, a] {
            assert!(
                t.device() == Device::Cpu && t.kind() == Kind::Float,
                "packed GEMM: CPU float tensors only"
            );
        }
        assert!(
            a.is_contiguous(),
            "packed GEMM: the input must be contiguous"
        );
        let (row_stride, col_stride) = (out.stride()[0], out.stride()[1]);
        assert!(
            col_stride == 1 && row_stride >= self.n,
            "packed GEMM: the output needs contiguous rows"
        );
        let ldc = c_int::try_from(row_stride).expect("packed GEMM: output stride fits MKL's int");
        // SAFETY: the sizes fit (checked at packing); `a` is a contiguous [m, k] float matrix,
        // `buf` the packed weight of the same m, n, k, and `out` addresses m rows of n floats at
        // stride ldc inside its storage; all three outlive the call.
        unsafe {
            (mkl.compute)(
                ROW_MAJOR,
                NO_TRANS,
                PACKED,
                self.m as c_int,
                self.n as c_int,
                self.k as c_int,
                a.data_ptr() as *const f32,
                self.k as c_int,
                self.buf.data_ptr() as *const f32,
                self.k as c_int,
                1.0,
                out.data_ptr() as *mut f32,
                ldc,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed product equals `out + a Wᵀ`, written in place into a row-strided view.
    #[test]
    fn packed_product_equals_addmm_in_a_strided_view() {
        if !available() {
            eprintln!("MKL's packed GEMM is not in this libtorch; nothing to compare");
            return;
        }
        tch::set_num_threads(1);
        tch::manual_seed(3);
        let (m, n, k, l) = (3, 10, 7, 4);
        let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu));
        let a = Tensor::randn([m, k], (Kind::Float, Device::Cpu));
        let base = Tensor::randn([m, l, n], (Kind::Float, Device::Cpu));
        let before = base.copy();
        let want = base.select(1, 2) + a.mm(&w.tr());
        let packed = PackedWeight::pack(&w, m).unwrap();
        assert_eq!(packed.rows(), m);
        let mut out = base.select(1, 2);
        packed.addmm_(&mut out, &a);
        let err = (&base.select(1, 2) - &want).abs().max().double_value(&[]);
        assert!(err < 1e-5, "{err}");
        // the other frames of the strided base are untouched
        for t in [0, 1, 3] {
            assert!(
                base.select(1, t).equal(&before.select(1, t)),
                "frame {t} changed"
            );
        }
    }

    #[test]
    fn only_cpu_float_matrices_are_packed() {
        if !available() {
            return;
        }
        let w = Tensor::ones([4, 3], (Kind::Double, Device::Cpu));
        assert!(PackedWeight::pack(&w, 2).is_none());
        let w = Tensor::ones([4], (Kind::Float, Device::Cpu));
        assert!(PackedWeight::pack(&w, 2).is_none());
    }
}

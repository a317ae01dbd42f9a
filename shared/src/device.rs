//! The `--device` value of both binaries: `auto | cpu | cuda | cuda:N`, parsed in one place, and
//! the libtorch device it names, checked to exist on this machine.
//!
//! What it does: [`DeviceSpec`] parses and prints the text (configs keep it as text);
//! [`parse_device`] turns it into a `tch::Device`: `auto` is the first GPU when libtorch sees one
//! and the CPU otherwise; `cuda` is `cuda:0`; a CUDA device that does not exist here is an error
//! that says to use `--device cpu`.
//!
//! What it does not: choose threads or move tensors. Only with the cargo feature `torch` (both
//! binaries enable it) does this module link libtorch.

use std::fmt;
use std::str::FromStr;

/// Why a `--device` value cannot be used: the text, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeviceError(pub String);

/// A device as written on the command line or in a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The first CUDA device when there is one, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => Ok(DeviceSpec::Cuda(n)),
                None => Err(DeviceError(format!(
                    "--device {s:?}: expected auto, cpu, cuda or cuda:N"
                ))),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(feature = "torch")]
impl DeviceSpec {
    /// The libtorch device, checked to exist on this machine.
    pub fn resolve(self) -> Result<tch::Device, DeviceError> {
        match self {
            DeviceSpec::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !tch::Cuda::is_available() || n >= tch::Cuda::device_count() as usize {
                    return Err(DeviceError(format!(
                        "--device {self}: no such CUDA device here (use --device cpu)"
                    )));
                }
                Ok(tch::Device::Cuda(n))
            }
        }
    }
}

/// Parse `--device` text and resolve it ([`DeviceSpec::resolve`]).
#[cfg(feature = "torch")]
pub fn parse_device(text: &str) -> Result<tch::Device, DeviceError> {
    text.parse::<DeviceSpec>()?.resolve()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_and_prints_back() {
        for (text, spec) in [
            ("auto", DeviceSpec::Auto),
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceSpec>(), Ok(spec));
            assert_eq!(spec.to_string().parse::<DeviceSpec>(), Ok(spec));
        }
    }

    #[test]
    fn a_misspelt_device_lists_the_choices() {
        let err = "gpu".parse::<DeviceSpec>().unwrap_err().to_string();
        assert_eq!(err, "--device \"gpu\": expected auto, cpu, cuda or cuda:N");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[cfg(feature = "torch")]
    #[test]
    fn a_cuda_device_that_is_not_here_says_to_use_the_cpu() {
        let n = tch::Cuda::device_count() as usize;
        let err = parse_device(&format!("cuda:{n}")).unwrap_err().to_string();
        assert!(
            err.contains("no such CUDA device here (use --device cpu)"),
            "{err}"
        );
        assert_eq!(parse_device("cpu"), Ok(tch::Device::Cpu));
    }
}

//! The uhid transport (docs/architecture.md §4): a virtual USB HID device created through `/dev/uhid`, with
//! the FIDO report descriptor, so browsers and libfido2 see a security key. Output reports
//! from the host go into the CTAPHID loop; its reports go back as input reports.

pub mod abi;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::abi::{DeviceInfo, KernelEvent};
use crate::ctaphid_loop::{self, Incoming, Options, Port};
use pocketkey_core::engine::Engine;

/// Where the kernel's uhid device lives.
pub const DEFAULT_PATH: &str = "/dev/uhid";

/// The pid.codes vendor id (open-source hardware) and a product id from its test range; hosts
/// find a FIDO device by its usage page, not by these numbers.
pub const VENDOR_ID: u32 = 0x1209;
pub const PRODUCT_ID: u32 = 0x000a;

/// The one host of a HID device: every program with the hidraw node open sees every input
/// report, and CTAPHID channels keep them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HidHost;

impl std::fmt::Display for HidHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the USB host")
    }
}

/// The USB key could not be created; says what to do.
#[derive(Debug, thiserror::Error)]
pub enum UhidError {
    #[error(
        "cannot create the USB key: {} does not exist (load the kernel module: sudo modprobe uhid)",
        .0.display()
    )]
    Missing(PathBuf),
    #[error(
        "cannot create the USB key: permission denied on {} (run as root, or give your user \
         access with a udev rule: KERNEL==\"uhid\", GROUP=\"plugdev\", MODE=\"0660\")",
        .0.display()
    )]
    NotAllowed(PathBuf),
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot create the USB key on {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
}

/// A created uhid device, ready to serve. Dropping it removes the device.
pub struct UhidTransport {
    device: File,
    /// Serialises writes from the loop and the engine's worker (one event per write).
    writing: Mutex<()>,
    log: bool,
}

impl UhidTransport {
    /// Opens `path` (normally [`DEFAULT_PATH`]) and creates a FIDO device called `name`. The
    /// error says what to do when uhid is missing or not ours to use.
    pub fn create(path: &Path, name: &str) -> Result<Self, UhidError> {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => UhidError::Missing(path.to_path_buf()),
                io::ErrorKind::PermissionDenied => UhidError::NotAllowed(path.to_path_buf()),
                _ => UhidError::Open {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        Self::create_on(device.into(), name).map_err(|source| UhidError::Create {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Creates the device on an already open uhid descriptor (a test gives one end of a
    /// socket pair and plays the kernel on the other).
    pub fn create_on(device: OwnedFd, name: &str) -> io::Result<Self> {
        let transport = Self {
            device: File::from(device),
            writing: Mutex::new(()),
            log: true,
        };
        let (major, minor, _) = crate::ctaphid_loop::version_triple();
        let info = DeviceInfo {
            name: name.to_string(),
            bus: abi::BUS_USB,
            vendor: VENDOR_ID,
            product: PRODUCT_ID,
            // bcdDevice-style: major.minor
            version: u32::from(major) << 8 | u32::from(minor),
        };
        transport.write_event(&abi::create2(&info, &abi::FIDO_REPORT_DESCRIPTOR))?;
        Ok(transport)
    }

    /// Serves until `stop` is raised (checked at least every 250 ms) or the device fails.
    pub fn run<E: Engine + 'static>(
        mut self,
        engine: E,
        options: Options,
        stop: Arc<AtomicBool>,
    ) -> io::Result<()> {
        self.log = options.log;
        ctaphid_loop::serve(Arc::new(self), engine, options, stop)
    }

    fn write_event(&self, event: &[u8]) -> io::Result<()> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let written = (&self.device).write(event)?;
        if written == event.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "uhid took part of an event",
            ))
        }
    }

    /// Waits up to `timeout` for the device to be readable.
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut fd = libc::pollfd {
            fd: self.device.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if n > 0
            && fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
            && fd.revents & libc::POLLIN == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the uhid device went away",
            ));
        }
        Ok(n > 0)
    }
}

impl Drop for UhidTransport {
    fn drop(&mut self) {
        // Closing the descriptor destroys the device too; saying so first is cleaner.
        let _ = self.write_event(&abi::destroy());
    }
}

impl Port for UhidTransport {
    type Peer = HidHost;

    fn recv(&self, timeout: Duration) -> io::Result<Option<Incoming<HidHost>>> {
        if !self.wait_readable(timeout)? {
            return Ok(None);
        }
        let mut buf = vec![0u8; abi::EVENT_SIZE];
        let len = match (&self.device).read(&mut buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "uhid closed")),
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let event = match abi::parse(&buf[..len]) {
            Ok(event) => event,
            Err(e) => {
                if self.log {
                    eprintln!("uhid: ignored an event: {e}");
                }
                return Ok(None);
            }
        };
        match event {
            KernelEvent::Output { data } => {
                Ok(abi::output_report(&data)
                    .map(|report| Incoming::Report(report.to_vec(), HidHost)))
            }
            KernelEvent::GetReport { id } => {
                self.write_event(&abi::get_report_reply(id, abi::EIO))?;
                Ok(None)
            }
            KernelEvent::SetReport { id } => {
                self.write_event(&abi::set_report_reply(id, abi::EIO))?;
                Ok(None)
            }
            KernelEvent::Start => {
                if self.log {
                    eprintln!("uhid: the system has the security key");
                }
                Ok(None)
            }
            KernelEvent::Stop | KernelEvent::Open | KernelEvent::Close | KernelEvent::Other(_) => {
                Ok(None)
            }
        }
    }

    fn send(&self, report: &[u8], _to: HidHost) {
        // A lost input report is the host's to retry, as on USB.
        let _ = self.write_event(&abi::input2(report));
    }

    fn requester(&self, _peer: HidHost) -> String {
        "this computer (USB)".to_string()
    }
}

#[cfg(test)]
mod tests;

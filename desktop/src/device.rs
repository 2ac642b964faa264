//! The virtual security key as the command lines choose it: `--udp [ADDR]` or
//! `--uhid [PATH]`, bound or created before anything else is opened, so a busy port or a
//! missing `/dev/uhid` costs nothing.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;

use crate::ctaphid_loop::Options;
use crate::udp::{self, UdpTransport};
use crate::uhid::{self, UhidTransport};
use pocketkey_core::engine::Engine;

/// `--udp` / `--uhid`, flattened into a command's arguments.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Present the key as CTAPHID over UDP (one 64-byte report per datagram, the simulation
    /// convention FIDO test tools speak) on ADDR, default 127.0.0.1:8111.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = udp::DEFAULT_ADDR)]
    pub udp: Option<SocketAddr>,

    /// Present the key as a USB security key that browsers see, through the Linux uhid
    /// device at PATH (default /dev/uhid; needs the uhid module and write access to it).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = uhid::DEFAULT_PATH, conflicts_with = "udp")]
    pub uhid: Option<PathBuf>,
}

/// The transport used when the command line names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultTransport {
    /// `pocketkey serve`: a development key for FIDO tools.
    Udp,
    /// `pocketkey-bridge`: the USB key browsers see.
    Uhid,
}

/// The virtual key could not be bound or created.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Udp(#[from] udp::BindError),
    #[error(transparent)]
    Uhid(#[from] uhid::UhidError),
}

/// A bound or created virtual key, ready to serve.
pub enum Device {
    Udp(UdpTransport),
    Uhid(UhidTransport),
}

impl Device {
    /// Binds the UDP socket or creates the uhid device named `name`; with neither flag, the
    /// program's `default`.
    pub fn open(
        args: &DeviceArgs,
        name: &str,
        default: DefaultTransport,
    ) -> Result<Self, DeviceError> {
        let uhid_path = match (&args.uhid, args.udp, default) {
            (Some(path), _, _) => Some(path.clone()),
            (None, None, DefaultTransport::Uhid) => Some(PathBuf::from(uhid::DEFAULT_PATH)),
            _ => None,
        };
        if let Some(path) = uhid_path {
            return Ok(Device::Uhid(UhidTransport::create(&path, name)?));
        }
        let addr = args.udp.unwrap_or(udp::DEFAULT_SOCKET_ADDR);
        if let Some(warning) = udp::exposure_warning(addr) {
            eprintln!("{warning}");
        }
        Ok(Device::Udp(UdpTransport::bind(addr)?))
    }

    /// Honours the UDP "power cycle" datagram from loopback senders (see
    /// [`UdpTransport::allow_power_cycle`]); a uhid device has no such datagram.
    pub fn allow_power_cycle(self, allow: bool) -> Self {
        match self {
            Device::Udp(t) => Device::Udp(t.allow_power_cycle(allow)),
            other => other,
        }
    }

    /// Where the key is, for the start-up line: "UDP 127.0.0.1:8111", "USB (uhid)".
    pub fn describe(&self) -> String {
        match self {
            Device::Udp(t) => match t.local_addr() {
                Ok(addr) => format!("UDP {addr}"),
                Err(_) => "UDP".to_string(),
            },
            Device::Uhid(_) => "USB (uhid)".to_string(),
        }
    }

    /// Serves until `stop` is raised or the transport fails.
    pub fn run<E: Engine + 'static>(
        self,
        engine: E,
        options: Options,
        stop: Arc<AtomicBool>,
    ) -> io::Result<()> {
        match self {
            Device::Udp(t) => t.run(engine, options, stop),
            Device::Uhid(t) => t.run(engine, options, stop),
        }
    }
}

// SPDX-License-Identifier: GPL-2.0

//! `/dev/memkit-ckpt`: checkpoint dirty tracking.
//!
//! For now the device answers `MEMKIT_IOC_VERSION` and refuses every other command
//! with `ENOTTY`.

use crate::pure::abi;
use kernel::{
    fs::File,
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    prelude::*,
};

/// The state of one open file of `/dev/memkit-ckpt`.
pub(crate) struct CkptDevice;

#[vtable]
impl MiscDevice for CkptDevice {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(CkptDevice, GFP_KERNEL)?)
    }

    fn ioctl(_me: &CkptDevice, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match abi::Command::decode(cmd) {
            Some(abi::Command::Version) => crate::uapi::version(arg, abi::DEV_CKPT, 0),
            _ => Err(ENOTTY),
        }
    }
}

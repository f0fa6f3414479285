// SPDX-License-Identifier: GPL-2.0

//! `/dev/memkit-journal`: micro-journal transactions on persistent memory.
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

/// The state of one open file of `/dev/memkit-journal`.
pub(crate) struct JournalDevice;

#[vtable]
impl MiscDevice for JournalDevice {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(JournalDevice, GFP_KERNEL)?)
    }

    fn ioctl(_me: &JournalDevice, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match abi::Command::decode(cmd) {
            Some(abi::Command::Version) => crate::uapi::version(arg, abi::DEV_JOURNAL, 0),
            None => Err(ENOTTY),
        }
    }
}

//! The two clocks on the time page: local time as `3:04:05 PM`, UTC as `15:04:05`.
//!
//! Local time needs the machine's time-zone rules; libc's `localtime_r` already has them (it
//! reads `TZ` and `/etc/localtime`), so no time-zone crate is pulled in for one line of output.
use std::time::{SystemTime, UNIX_EPOCH};

/// Hours, minutes, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl TimeOfDay {
    /// `3:04:05 PM` (12-hour clock, hour not zero-padded; midnight is 12 AM).
    pub fn twelve_hour(self) -> String {
        let (h, ampm) = match self.hour {
            0 => (12, "AM"),
            1..=11 => (self.hour, "AM"),
            12 => (12, "PM"),
            h => (h - 12, "PM"),
        };
        format!("{h}:{:02}:{:02} {ampm}", self.minute, self.second)
    }

    /// `15:04:05`.
    pub fn twenty_four_hour(self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

/// Seconds since the epoch now (0 if the clock is before 1970, which only a broken clock is).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// UTC time of day at `unix` seconds.
pub fn utc(unix: i64) -> TimeOfDay {
    let s = unix.rem_euclid(86_400);
    // `s` is in 0..86_400, so these conversions cannot fail.
    let part = |v: i64| u32::try_from(v).unwrap_or(0);
    TimeOfDay {
        hour: part(s / 3600),
        minute: part(s / 60 % 60),
        second: part(s % 60),
    }
}

/// Local time of day at `unix` seconds; falls back to UTC if the C library cannot convert.
pub fn local(unix: i64) -> TimeOfDay {
    let t: libc::time_t = unix;
    // SAFETY: `tm` is plain old data, so all-zero is a valid value; localtime_r writes only
    // into the `tm` we pass and reads only `t`, both live for the whole call. It is the
    // re-entrant variant, safe to call from many threads (we never call setenv).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return utc(unix);
    }
    let part = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
    TimeOfDay {
        hour: part(tm.tm_hour),
        minute: part(tm.tm_min),
        // tm_sec may be 60 on a leap second; shown as is.
        second: part(tm.tm_sec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tod(hour: u32, minute: u32, second: u32) -> TimeOfDay {
        TimeOfDay {
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn twelve_hour_clock() {
        assert_eq!(tod(15, 4, 5).twelve_hour(), "3:04:05 PM");
        assert_eq!(tod(0, 0, 0).twelve_hour(), "12:00:00 AM");
        assert_eq!(tod(11, 59, 59).twelve_hour(), "11:59:59 AM");
        assert_eq!(tod(12, 30, 0).twelve_hour(), "12:30:00 PM");
        assert_eq!(tod(23, 1, 2).twelve_hour(), "11:01:02 PM");
    }

    #[test]
    fn twenty_four_hour_clock() {
        assert_eq!(tod(15, 4, 5).twenty_four_hour(), "15:04:05");
        assert_eq!(tod(0, 0, 9).twenty_four_hour(), "00:00:09");
    }

    #[test]
    fn utc_from_unix_seconds() {
        assert_eq!(utc(0), tod(0, 0, 0));
        // 2006-01-02T15:04:05Z, Go's reference time.
        assert_eq!(utc(1_136_214_245), tod(15, 4, 5));
        assert_eq!(utc(-1), tod(23, 59, 59));
    }

    #[test]
    fn local_time_is_a_whole_number_of_quarter_hours_from_utc() {
        let now = unix_now();
        let (l, u) = (local(now), utc(now));
        let secs = |t: TimeOfDay| i64::from(t.hour * 3600 + t.minute * 60 + t.second);
        let offset = (secs(l) - secs(u)).rem_euclid(86_400);
        assert_eq!(offset % 900, 0, "local {l:?} vs utc {u:?}");
        assert!(l.hour < 24 && l.minute < 60 && l.second <= 60);
    }
}

//! Proleptic Gregorian civil dates (no time zone, no clock) and the Japanese era notation some
//! forms use for dates of birth.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    pub const fn new(year: i32, month: u32, day: u32) -> Date {
        Date { year, month, day }
    }

    /// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
    pub fn days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Inverse of [`Date::days`].
    pub fn from_days(z: i64) -> Date {
        let z = z + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    pub fn add_days(self, n: i64) -> Date {
        Date::from_days(self.days() + n)
    }

    /// Completed years of age on `on` (a birthday on 29 February counts from 1 March).
    pub fn age_on(self, on: Date) -> i32 {
        let mut age = on.year - self.year;
        if (on.month, on.day) < (self.month, self.day) {
            age -= 1;
        }
        age
    }

    pub fn write_iso(self, out: &mut String) {
        let _ = write!(out, "{:04}-{:02}-{:02}", self.year, self.month, self.day);
    }

    pub fn iso(self) -> String {
        let mut s = String::with_capacity(10);
        self.write_iso(&mut s);
        s
    }

    /// `S33.04.12`-style era date. Era boundaries: Taisho from 1912-07-30, Showa from
    /// 1926-12-25, Heisei from 1989-01-08, Reiwa from 2019-05-01; year 1 of an era is `01`.
    pub fn era(self) -> String {
        let (letter, first_year) = if self >= Date::new(2019, 5, 1) {
            ('R', 2019)
        } else if self >= Date::new(1989, 1, 8) {
            ('H', 1989)
        } else if self >= Date::new(1926, 12, 25) {
            ('S', 1926)
        } else if self >= Date::new(1912, 7, 30) {
            ('T', 1912)
        } else {
            ('M', 1868)
        };
        format!(
            "{letter}{:02}.{:02}.{:02}",
            self.year - first_year + 1,
            self.month,
            self.day
        )
    }

    pub fn ym(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_over_two_centuries() {
        for z in (Date::new(1890, 1, 1).days()..Date::new(2100, 1, 1).days()).step_by(7) {
            assert_eq!(Date::from_days(z).days(), z);
        }
        assert_eq!(Date::new(1970, 1, 1).days(), 0);
        assert_eq!(
            Date::new(2000, 3, 1).days() - Date::new(2000, 2, 28).days(),
            2
        );
    }

    #[test]
    fn era_boundaries() {
        assert_eq!(Date::new(1926, 12, 24).era(), "T15.12.24");
        assert_eq!(Date::new(1926, 12, 25).era(), "S01.12.25");
        assert_eq!(Date::new(1958, 4, 12).era(), "S33.04.12");
        assert_eq!(Date::new(1989, 1, 7).era(), "S64.01.07");
        assert_eq!(Date::new(1989, 1, 8).era(), "H01.01.08");
        assert_eq!(Date::new(1993, 1, 20).era(), "H05.01.20");
        assert_eq!(Date::new(2019, 4, 30).era(), "H31.04.30");
        assert_eq!(Date::new(2019, 5, 1).era(), "R01.05.01");
        assert_eq!(Date::new(1912, 7, 29).era(), "M45.07.29");
        assert_eq!(Date::new(1912, 7, 30).era(), "T01.07.30");
    }

    #[test]
    fn age_counts_completed_years() {
        let b = Date::new(2000, 6, 15);
        assert_eq!(b.age_on(Date::new(2020, 6, 14)), 19);
        assert_eq!(b.age_on(Date::new(2020, 6, 15)), 20);
    }
}

//! [`Schedule`]: a 6-field NCRONTAB schedule, the form of a timer trigger's `schedule`.
//!
//! Its own module, below both the settings (`TIMER_SCHEDULE`) and the timer function that
//! runs on it.

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A 6-field NCRONTAB schedule (`sec min hour day month weekday`, UTC), as the Functions host
/// reads `function.json`'s `schedule`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a 6-field NCRONTAB schedule: {reason}")]
pub struct InvalidSchedule {
    text: String,
    reason: String,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, InvalidSchedule> {
        let invalid = |reason: String| InvalidSchedule {
            text: text.to_owned(),
            reason,
        };
        if text.split_whitespace().count() != 6 {
            return Err(invalid("it needs exactly 6 fields".into()));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            cron,
            text: text.to_owned(),
        })
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_six_hourly_schedule_fires_at_00_06_12_and_18_utc() {
        let schedule = Schedule::parse("0 0 */6 * * *").unwrap();
        let mut next = at("2026-11-28T05:59:59Z");
        let mut seen = Vec::new();
        for _ in 0..5 {
            next = schedule.next_after(next).unwrap();
            seen.push(next.to_rfc3339());
        }
        assert_eq!(
            seen,
            [
                "2026-11-28T06:00:00+00:00",
                "2026-11-28T12:00:00+00:00",
                "2026-11-28T18:00:00+00:00",
                "2026-11-29T00:00:00+00:00",
                "2026-11-29T06:00:00+00:00",
            ]
        );
        // An occurrence itself is not "after" itself.
        assert_eq!(
            schedule.next_after(at("2026-11-28T06:00:00Z")).unwrap(),
            at("2026-11-28T12:00:00Z")
        );
    }

    #[test]
    fn ncrontab_weekdays_count_from_sunday_as_0() {
        // Every Monday at 09:30:15. 2026-11-28 is a Saturday.
        let schedule = Schedule::parse("15 30 9 * * 1").unwrap();
        assert_eq!(
            schedule.next_after(at("2026-11-28T00:00:00Z")).unwrap(),
            at("2026-11-30T09:30:15Z")
        );
        let sunday = Schedule::parse("0 0 12 * * 0").unwrap();
        assert_eq!(
            sunday.next_after(at("2026-11-28T00:00:00Z")).unwrap(),
            at("2026-11-29T12:00:00Z")
        );
    }

    #[test]
    fn schedules_that_are_not_six_fields_are_refused() {
        for bad in [
            "",
            "0 */6 * * *",
            "0 0 */6 * * * 2026",
            "a b c d e f",
            "0 0 25 * * *",
            "61 0 0 * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
    }
}

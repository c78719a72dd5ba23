//! Calendar periods for calendar quotas: the day, ISO week or (anchored) month an instant falls in,
//! in an IANA time zone.
//!
//! Owns the period arithmetic only: where a period starts and ends, how long it lasts, how long is
//! left, and a stable id for storage. Must not touch counters, the table, clocks, config files or
//! the usage store: every function takes `now` as a [`Timestamp`], so tests run at fixed instants
//! and never read the system clock.
//!
//! # Boundaries
//! A period is half-open, `[start, end)`, and both ends are a local midnight in the calendar's zone:
//!
//! ```text
//! Day    local 00:00 of the date             .. local 00:00 of the next date
//! Week   local 00:00 of the ISO week's Monday .. local 00:00 of the next Monday
//! Month  local 00:00 of the anchor day        .. local 00:00 of the anchor day a month later
//! ```
//!
//! The month's anchor day (1..=28) is a billing day: with anchor 15 a quota resets on the 15th, and
//! an instant on the 10th belongs to the period that began on the 15th of the previous month.
//! Anchor 1 is the calendar month. Capping the anchor at 28 means every month has the day, so no
//! period is ever clamped to a shorter month's end.
//!
//! # Daylight saving time
//! Lengths follow the wall clock, so a day is 23 or 25 hours long when the clocks change that day
//! (see [`Period::secs`]). Local midnight is turned into an instant with jiff's *compatible*
//! disambiguation: where midnight does not exist because the clocks jump forward at 00:00 (America/
//! Santiago, America/Sao_Paulo until 2019, Asia/Beirut), the period starts at the first valid
//! instant after the gap, 01:00 local; where midnight happens twice, the first one counts.
//!
//! Consecutive boundaries are strictly increasing, so every instant lies in exactly one period.
//! [`Calendar::period_at`] finds it from `now`'s local date and, if a change of offset that straddles
//! midnight puts `now` just outside that date's period, steps one period back or forward.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, ToSpan};

/// The kind of calendar period a quota resets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    /// Local midnight to local midnight.
    Day,
    /// ISO week: Monday 00:00 to the next Monday 00:00.
    Week,
    /// From the anchor day of one month to the same day of the next (the calendar month when the
    /// anchor is 1).
    Month,
}

impl PeriodKind {
    /// Parses `"d"`/`"day"`, `"w"`/`"week"` or `"mo"`/`"month"` (exact, lower case).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "d" | "day" => Ok(Self::Day),
            "w" | "week" => Ok(Self::Week),
            "mo" | "month" => Ok(Self::Month),
            other => Err(format!(
                "unknown calendar period {other:?}: expected \"day\" (\"d\"), \"week\" (\"w\") or \"month\" (\"mo\")"
            )),
        }
    }
}

/// One calendar period, half-open: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// The first instant in the period.
    pub start: Timestamp,
    /// The first instant of the next period.
    pub end: Timestamp,
}

impl Period {
    /// The period's length in seconds; a day on which the clocks change is 82,800 or 90,000.
    pub fn secs(&self) -> u64 {
        whole_secs(self.end.duration_since(self.start))
    }

    /// Seconds from `now` until the period ends, rounded up: at least 1 while `now < end`, 0 after.
    pub fn secs_until_end(&self, now: Timestamp) -> u64 {
        let left = self.end.duration_since(now);
        if !left.is_positive() {
            return 0;
        }
        whole_secs(left) + u64::from(left.subsec_nanos() > 0)
    }
}

/// The whole seconds in a non-negative duration; 0 for a negative one.
fn whole_secs(duration: SignedDuration) -> u64 {
    u64::try_from(duration.as_secs()).unwrap_or(0)
}

/// A period kind in a time zone: the rule that cuts wall time into calendar periods.
#[derive(Debug, Clone)]
pub struct Calendar {
    kind: PeriodKind,
    /// Boundaries are local midnights in this zone, so they move with its DST rules.
    tz: TimeZone,
    /// The day of the month a `Month` period starts on (1..=28); 1 for days and weeks.
    anchor_day: u8,
}

impl Calendar {
    /// A calendar of `kind` in the IANA zone `tz_name` (`"UTC"` for the default).
    ///
    /// `anchor_day` is only accepted for [`PeriodKind::Month`] and must be 1..=28; `None` means 1.
    pub fn new(kind: PeriodKind, tz_name: &str, anchor_day: Option<u8>) -> Result<Self, String> {
        let tz =
            TimeZone::get(tz_name).map_err(|e| format!("unknown time zone {tz_name:?}: {e}"))?;
        Self::with_time_zone(kind, tz, anchor_day)
    }

    /// As [`Calendar::new`], with the zone already resolved.
    fn with_time_zone(
        kind: PeriodKind,
        tz: TimeZone,
        anchor_day: Option<u8>,
    ) -> Result<Self, String> {
        let anchor_day = match (kind, anchor_day) {
            (_, None) => 1,
            (PeriodKind::Month, Some(day @ 1..=28)) => day,
            (PeriodKind::Month, Some(day)) => {
                return Err(format!(
                    "anchor day {day} is out of range: it must be 1..=28"
                ))
            }
            (_, Some(_)) => return Err("an anchor day is only valid for month periods".to_owned()),
        };
        Ok(Self {
            kind,
            tz,
            anchor_day,
        })
    }

    /// The kind of period this calendar cuts.
    pub fn kind(&self) -> PeriodKind {
        self.kind
    }

    /// The day of the month a month period starts on (1 for days and weeks).
    pub fn anchor_day(&self) -> u8 {
        self.anchor_day
    }

    /// The period containing `now`.
    pub fn period_at(&self, now: Timestamp) -> Period {
        let first = self.first_date(self.tz.to_datetime(now).date());
        let period = self.period_from(first);
        if now < period.start {
            self.period_from(self.first_date(shift(first, -1.day())))
        } else if now >= period.end {
            self.period_from(self.next_first(first))
        } else {
            period
        }
    }

    /// A stable id of the period containing `now`: its start in Unix seconds. Unique within one
    /// calendar only, so a storage key pairs it with the quota it counts for.
    pub fn period_id(&self, now: Timestamp) -> i64 {
        self.period_at(now).start.as_second()
    }

    /// The period whose first local date is `first`.
    fn period_from(&self, first: Date) -> Period {
        Period {
            start: self.midnight(first),
            end: self.midnight(self.next_first(first)),
        }
    }

    /// The first local date of the period that contains the local date `date`.
    fn first_date(&self, date: Date) -> Date {
        match self.kind {
            PeriodKind::Day => date,
            PeriodKind::Week => shift(date, (-date.weekday().to_monday_zero_offset()).days()),
            PeriodKind::Month => {
                let anchor = i8::try_from(self.anchor_day).unwrap_or(1);
                // Every month has days 1..=28, so the anchor always exists.
                let this = Date::new(date.year(), date.month(), anchor).unwrap_or(date);
                if date.day() >= anchor {
                    this
                } else {
                    shift(this, -1.month())
                }
            }
        }
    }

    /// The first local date of the period after the one starting on `first`.
    fn next_first(&self, first: Date) -> Date {
        match self.kind {
            PeriodKind::Day => shift(first, 1.day()),
            PeriodKind::Week => shift(first, 1.week()),
            PeriodKind::Month => shift(first, 1.month()),
        }
    }

    /// Local midnight at the start of `date`, with compatible disambiguation (after a gap, the
    /// first of a fold). Saturates only at the edges of jiff's range, years -9999 and 9999.
    fn midnight(&self, date: Date) -> Timestamp {
        let edge = if date.year() < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        };
        self.tz.to_timestamp(DateTime::from(date)).unwrap_or(edge)
    }
}

/// `date` moved by `span`, saturating at jiff's first or last date.
fn shift(date: Date, span: Span) -> Date {
    let edge = if span.is_negative() {
        Date::MIN
    } else {
        Date::MAX
    };
    date.checked_add(span).unwrap_or(edge)
}

#[cfg(test)]
#[path = "calendar_tests.rs"]
mod tests;

//! Pure rules: prices and coupons, the ledger's postings, invoice numbers, the refund window and
//! the revenue CSV. No I/O here.

use coursebus_contracts::catalog::{Course, Price};
use coursebus_contracts::payments::{Discount, RevenueRow};
use coursebus_contracts::validate::ValidationError;
use time::OffsetDateTime;

/// Ledger accounts. Debits are positive, credits negative; each transaction sums to zero.
pub mod account {
    /// Money held at the payment provider (an asset).
    pub const STRIPE_BALANCE: &str = "stripe_balance";
    /// Course sales at list price (income: credited).
    pub const COURSE_REVENUE: &str = "course_revenue";
    /// Coupon discounts (contra-revenue: debited).
    pub const COUPON_DISCOUNTS: &str = "coupon_discounts";
    /// Money given back (contra-revenue: debited).
    pub const REFUNDS: &str = "refunds";
    /// What the payment provider kept (an expense: debited). Stripe keeps it on refunds too.
    pub const PAYMENT_FEES: &str = "payment_fees";
}

/// One ledger line before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: &'static str,
    pub amount_minor: i64,
    pub memo: String,
}

/// The postings of a payment: the buyer paid `total`, the coupon took `discount` off `list`, the
/// provider kept `fee` of it.
pub fn payment_postings(list: i64, discount: i64, total: i64, fee: i64, coupon: Option<&str>) -> Vec<Posting> {
    let mut out = Vec::with_capacity(5);
    if total > 0 {
        out.push(Posting { account: account::STRIPE_BALANCE, amount_minor: total, memo: "payment received".into() });
    }
    if discount > 0 {
        out.push(Posting {
            account: account::COUPON_DISCOUNTS,
            amount_minor: discount,
            memo: format!("coupon {}", coupon.unwrap_or("?")),
        });
    }
    if list > 0 {
        out.push(Posting { account: account::COURSE_REVENUE, amount_minor: -list, memo: "course sale".into() });
    }
    if fee > 0 {
        out.push(Posting { account: account::PAYMENT_FEES, amount_minor: fee, memo: "processing fee".into() });
        out.push(Posting { account: account::STRIPE_BALANCE, amount_minor: -fee, memo: "processing fee kept".into() });
    }
    out
}

/// The postings of a refund of `amount`.
pub fn refund_postings(amount: i64, reason: &str) -> Vec<Posting> {
    vec![
        Posting { account: account::REFUNDS, amount_minor: amount, memo: format!("refund: {reason}") },
        Posting { account: account::STRIPE_BALANCE, amount_minor: -amount, memo: "refund paid out".into() },
    ]
}

/// What a course costs in `currency` (its main currency when `None`).
pub fn price_in(course: &Course, currency: Option<&str>) -> Result<Price, ValidationError> {
    let Some(currency) = currency else { return Ok(course.price.clone()) };
    let wanted = currency.trim().to_ascii_uppercase();
    Price::in_currency(&course.price, &course.other_prices, &wanted).cloned().ok_or_else(|| {
        let offered: Vec<&str> =
            std::iter::once(&course.price).chain(&course.other_prices).map(|p| p.currency.as_str()).collect();
        ValidationError::new("currency", format!("this course is sold in {}", offered.join(", ")))
    })
}

/// The discount of `coupon` on `price`: a percentage rounds half up to the minor unit; a fixed
/// amount applies only in its own currency and never exceeds the price.
pub fn discount(coupon: &Discount, price: &Price) -> Result<i64, ValidationError> {
    match coupon {
        Discount::Percent(p) => {
            let p = i64::from(*p);
            Ok(((price.amount_minor * p * 2 + 100) / 200).min(price.amount_minor))
        }
        Discount::Amount { amount_minor, currency } if *currency == price.currency => {
            Ok((*amount_minor).min(price.amount_minor))
        }
        Discount::Amount { currency, .. } => {
            Err(ValidationError::new("coupon", format!("this coupon applies to prices in {currency} only")))
        }
    }
}

/// `2026-000042`.
pub fn invoice_number(year: i32, sequence: i64) -> String {
    format!("{year}-{sequence:06}")
}

/// The learner's refund window (from the worker's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundWindow {
    /// Days after payment a learner may ask.
    pub days: u32,
    /// The learner must have completed less than this share of the course (percent).
    pub max_progress_percent: u32,
}

impl RefundWindow {
    /// `Ok(())` if a learner may still have their money back, else why not.
    pub fn allows(&self, paid_at: OffsetDateTime, now: OffsetDateTime, progress_percent: u32) -> Result<(), String> {
        let deadline = paid_at + time::Duration::days(i64::from(self.days));
        if now > deadline {
            return Err(format!("the refund window of {} days after payment has closed", self.days));
        }
        if progress_percent >= self.max_progress_percent {
            return Err(format!(
                "{progress_percent} % of the course is done; refunds are possible below {} %",
                self.max_progress_percent
            ));
        }
        Ok(())
    }
}

/// A field of a CSV line (RFC 4180): quoted when it holds a comma, quote or line break; a
/// leading `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not run it as a formula.
fn csv_field(raw: &str) -> String {
    let guarded = if raw.starts_with(['=', '+', '-', '@']) && raw.parse::<f64>().is_err() {
        format!("'{raw}")
    } else {
        raw.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) { format!("\"{}\"", guarded.replace('"', "\"\"")) } else { guarded }
}

/// The revenue report as CSV, header first, CRLF line ends.
pub fn revenue_csv(rows: &[RevenueRow]) -> String {
    let mut out = String::from(
        "period,course_id,course_title,currency,orders,gross_minor,discounts_minor,refunds_minor,fees_minor,net_minor\r\n",
    );
    for r in rows {
        let fields = [
            csv_field(&r.period),
            r.course_id.to_string(),
            csv_field(&r.course_title),
            csv_field(&r.currency),
            r.orders.to_string(),
            r.gross_minor.to_string(),
            r.discounts_minor.to_string(),
            r.refunds_minor.to_string(),
            r.fees_minor.to_string(),
            r.net_minor.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// `YYYY-MM-DD` as a date.
pub fn parse_day(field: &'static str, raw: &str) -> Result<time::Date, ValidationError> {
    time::Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| ValidationError::new(field, "a date like 2026-11-26"))
}

/// Reasons and other free text: trimmed, 1 to 500 characters, no control characters.
pub fn reason(raw: Option<&str>, default: &str) -> Result<String, ValidationError> {
    let text = raw.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(default);
    if text.chars().count() > 500 || text.chars().any(char::is_control) {
        return Err(ValidationError::new("reason", "at most 500 characters, no control characters"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn price(amount_minor: i64, currency: &str) -> Price {
        Price { amount_minor, currency: currency.into() }
    }

    fn sum(postings: &[Posting]) -> i64 {
        postings.iter().map(|p| p.amount_minor).sum()
    }

    #[test]
    fn every_posting_set_balances() {
        for (list, discount, fee) in [(4_900, 0, 172), (4_900, 1_225, 137), (4_900, 4_900, 0), (1, 0, 1), (0, 0, 0)] {
            let p = payment_postings(list, discount, list - discount, fee, Some("X"));
            assert_eq!(sum(&p), 0, "{list} {discount}");
            assert!(p.iter().all(|p| p.amount_minor != 0));
        }
        assert_eq!(sum(&refund_postings(1_234, "asked")), 0);
        let paid = payment_postings(4_900, 1_225, 3_675, 137, Some("SPRING"));
        let by_account = |a: &str| paid.iter().filter(|p| p.account == a).map(|p| p.amount_minor).sum::<i64>();
        assert_eq!((by_account(account::STRIPE_BALANCE), by_account(account::PAYMENT_FEES)), (3_538, 137));
        assert_eq!(
            paid[0],
            Posting { account: account::STRIPE_BALANCE, amount_minor: 3_675, memo: "payment received".into() }
        );
        assert_eq!(paid[2].amount_minor, -4_900);
    }

    #[test]
    fn discounts_round_half_up_and_never_exceed_the_price() {
        assert_eq!(discount(&Discount::Percent(25), &price(4_900, "EUR")).unwrap(), 1_225);
        assert_eq!(discount(&Discount::Percent(33), &price(999, "EUR")).unwrap(), 330); // 329.67
        assert_eq!(discount(&Discount::Percent(50), &price(1, "EUR")).unwrap(), 1); // 0.5 → 1
        assert_eq!(discount(&Discount::Percent(100), &price(4_900, "EUR")).unwrap(), 4_900);
        let fixed = Discount::Amount { amount_minor: 1_000, currency: "EUR".into() };
        assert_eq!(discount(&fixed, &price(4_900, "EUR")).unwrap(), 1_000);
        assert_eq!(discount(&fixed, &price(500, "EUR")).unwrap(), 500);
        assert_eq!(discount(&fixed, &price(4_900, "USD")).unwrap_err().field, "coupon");
    }

    #[test]
    fn invoice_numbers_are_zero_padded_per_year() {
        assert_eq!(invoice_number(2026, 42), "2026-000042");
        assert_eq!(invoice_number(2027, 1_000_000), "2027-1000000");
    }

    #[test]
    fn the_refund_window_needs_both_time_and_little_progress() {
        let w = RefundWindow { days: 14, max_progress_percent: 30 };
        let paid = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        assert!(w.allows(paid, paid + time::Duration::days(14), 29).is_ok());
        assert!(w.allows(paid, paid + time::Duration::days(14) + time::Duration::seconds(1), 0).is_err());
        assert!(w.allows(paid, paid, 30).unwrap_err().contains("30 %"));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let row = RevenueRow {
            period: "2026-11".into(),
            course_id: Uuid::nil(),
            course_title: "Rust, \"fast\"".into(),
            currency: "EUR".into(),
            orders: 2,
            gross_minor: 9_800,
            discounts_minor: 1_225,
            refunds_minor: 3_675,
            fees_minor: 344,
            net_minor: 4_556,
        };
        let csv = revenue_csv(&[row.clone(), RevenueRow { course_title: "=HYPERLINK(1)".into(), ..row }]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert!(lines[0].starts_with("period,course_id,course_title"));
        assert_eq!(
            lines[1],
            "2026-11,00000000-0000-0000-0000-000000000000,\"Rust, \"\"fast\"\"\",EUR,2,9800,1225,3675,344,4556"
        );
        assert!(lines[2].contains(",'=HYPERLINK(1),"));
        assert_eq!(lines[3], "");
    }

    #[test]
    fn prices_are_chosen_by_currency() {
        let json = serde_json::json!({
            "id": Uuid::nil(), "slug": "s", "instructor_id": Uuid::nil(), "status": "published", "version": 1,
            "published_version": 1, "title": "t", "summary": "", "description": "", "language": "en",
            "level": "beginner", "tags": [], "price": {"amount_minor": 4900, "currency": "EUR"},
            "other_prices": [{"amount_minor": 5500, "currency": "USD"}], "cover_image_id": null,
            "prerequisites": [], "modules": [], "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "published_at": null
        });
        let course: Course = serde_json::from_value(json).unwrap();
        assert_eq!(price_in(&course, None).unwrap(), price(4_900, "EUR"));
        assert_eq!(price_in(&course, Some("usd")).unwrap(), price(5_500, "USD"));
        assert!(price_in(&course, Some("GBP")).unwrap_err().message.contains("EUR, USD"));
    }
}

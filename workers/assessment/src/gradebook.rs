//! Gradebook: weighted categories, drop-lowest, per-learner and whole-course views, CSV export.
//!
//! A course's graded [`Item`]s (quizzes, assignments) belong to weighted [`Category`]s whose
//! weights (integer percent points) sum to 100 ([`validate`] checks the setup). A learner's
//! grade is computed with these rules, exactly:
//!
//! - **Item percentage** = points / `max_points`. Points are integer hundredths; a score above
//!   the maximum is capped at 100 % of the item. Items with `max_points == 0` are ignored
//!   everywhere (grading and CSV export). When several scores of one learner on one item are
//!   given, the last one in the slice wins (a later release supersedes an earlier one).
//! - **Missing scores** ([`Missing`]): with [`Missing::Exclude`] an ungraded item neither counts
//!   nor can be dropped (the grade so far); with [`Missing::Zero`] it counts as 0 % and can be
//!   dropped (the final grade).
//! - **Drop lowest**: of the item percentages that count, the learner's `drop_lowest` lowest are
//!   dropped, but never so many that nothing counts (at most count − 1 are dropped). Ties: the
//!   item that comes first in `items` order is dropped first.
//! - **Category percentage** = the plain mean of the remaining item percentages (each item weighs
//!   the same, whatever its points), or `None` when no item counts.
//! - **Weighted total** = Σ(weight × category %) / Σ(weight of the categories that have a
//!   percentage): categories without any counting item are left out and the remaining weights
//!   re-normalised. `None` when no category has a percentage (or those that have one all weigh 0).
//!
//! All arithmetic is exact (rational numbers with integer numerators and denominators, widened
//! to arbitrary precision when `u128` would not suffice). Results are basis points
//! (8537 = 85.37 %), rounded half up only once at the end of each category's computation and
//! once at the end of the total. The total is computed from the *exact* category percentages,
//! not from the rounded ones, so no value is rounded twice.
//!
//! [`csv`] exports the whole course as RFC 4180 CSV (CRLF line ends, header first), with
//! spreadsheet formula injection neutralised.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use uuid::Uuid;

pub use coursebus_contracts::assessment::{Category, CategoryResult, Item, LearnerGrade, Missing, Score};

/// Configuration problems found by [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GradebookError {
    /// The category weights do not sum to exactly 100 (`sum` saturates at `u32::MAX`).
    WeightsDoNotSumTo100 {
        /// The actual sum of the weights.
        sum: u32,
    },
    /// An item refers to a category that does not exist.
    UnknownCategory {
        /// The item's id.
        item: Uuid,
    },
    /// A category would drop all of its (gradable) items.
    DropsAllItems {
        /// The category's id.
        category: Uuid,
    },
    /// Two categories share an id.
    DuplicateCategory {
        /// The duplicated id.
        id: Uuid,
    },
}

impl fmt::Display for GradebookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WeightsDoNotSumTo100 { sum } => {
                write!(f, "the category weights sum to {sum} %, but they must sum to exactly 100 %")
            }
            Self::UnknownCategory { item } => write!(f, "item {item} belongs to a category that does not exist"),
            Self::DropsAllItems { category } => {
                write!(f, "category {category} drops as many lowest items as it has, so none would count")
            }
            Self::DuplicateCategory { id } => write!(f, "category id {id} is used by more than one category"),
        }
    }
}

impl std::error::Error for GradebookError {}

/// Validate a course's setup: no duplicate category ids, weights sum to exactly 100, every
/// item's category exists, and no category drops as many items as it has (when it has any;
/// only items with `max_points > 0` are counted, the others are ignored by grading).
///
/// The checks run in that order; the first problem found is returned.
pub fn validate(categories: &[Category], items: &[Item]) -> Result<(), GradebookError> {
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(categories.len());
    for category in categories {
        if seen.insert(category.id, 0).is_some() {
            return Err(GradebookError::DuplicateCategory { id: category.id });
        }
    }
    let sum = categories.iter().fold(0u32, |acc, c| acc.saturating_add(c.weight_percent));
    if sum != 100 {
        return Err(GradebookError::WeightsDoNotSumTo100 { sum });
    }
    for item in items {
        match seen.get_mut(&item.category_id) {
            None => return Err(GradebookError::UnknownCategory { item: item.id }),
            Some(count) if item.max_points > 0 => *count += 1,
            Some(_) => {}
        }
    }
    for category in categories {
        let count = seen.get(&category.id).copied().unwrap_or(0);
        let drops = usize::try_from(category.drop_lowest).unwrap_or(usize::MAX);
        if count > 0 && drops >= count {
            return Err(GradebookError::DropsAllItems { category: category.id });
        }
    }
    Ok(())
}

/// A learner's grade (`missing` says how ungraded items count). See the module docs for the
/// rules.
pub fn learner_grade(
    learner: Uuid,
    categories: &[Category],
    items: &[Item],
    scores: &[Score],
    missing: Missing,
) -> LearnerGrade {
    let mut own: HashMap<Uuid, u32> = HashMap::new();
    for score in scores.iter().filter(|s| s.learner_id == learner) {
        own.insert(score.item_id, score.points_hundredths);
    }
    grade_with(learner, &own, categories, items, missing)
}

/// Every learner's grade (the instructor's view), learners in the given order.
pub fn course_grades(
    learners: &[Uuid],
    categories: &[Category],
    items: &[Item],
    scores: &[Score],
    missing: Missing,
) -> Vec<LearnerGrade> {
    let index = index_scores(scores);
    let empty = HashMap::new();
    learners
        .iter()
        .map(|&learner| grade_with(learner, index.get(&learner).unwrap_or(&empty), categories, items, missing))
        .collect()
}

/// CSV (RFC 4180, CRLF line ends, header first, every line CRLF-terminated).
///
/// Columns: `learner_id`, `learner` (the label), one column per item with `max_points > 0` in
/// `items` order headed `"<item title> (<max> pts)"`, one column per category headed
/// `"<name> %"`, and `total %`. Points are the released points (not capped) with 2 decimals
/// ("8.50"), percentages with 2 decimals ("85.37"); a cell is empty when the score is missing
/// or the percentage is `None`. `labels[i]` is the display label of `grades[i]` (empty when
/// absent). Fields are quoted when they contain `,` `"` CR or LF; a field starting with `=`,
/// `+`, `-` or `@` that is not a number gets a leading `'` (spreadsheet formula injection).
pub fn csv(
    grades: &[LearnerGrade],
    labels: &[String],
    categories: &[Category],
    items: &[Item],
    scores: &[Score],
) -> String {
    let index = index_scores(scores);
    let items: Vec<&Item> = items.iter().filter(|it| it.max_points > 0).collect();
    let mut out = String::new();

    let mut header: Vec<String> = vec!["learner_id".to_owned(), "learner".to_owned()];
    header.extend(items.iter().map(|it| format!("{} ({} pts)", it.title, it.max_points)));
    header.extend(categories.iter().map(|c| format!("{} %", c.name)));
    header.push("total %".to_owned());
    push_record(&mut out, &header);

    for (i, grade) in grades.iter().enumerate() {
        let own = index.get(&grade.learner_id);
        let mut row: Vec<String> = Vec::with_capacity(header.len());
        row.push(grade.learner_id.to_string());
        row.push(labels.get(i).cloned().unwrap_or_default());
        row.extend(
            items
                .iter()
                .map(|it| own.and_then(|o| o.get(&it.id)).map(|&p| fmt_hundredths(u64::from(p))).unwrap_or_default()),
        );
        row.extend(categories.iter().map(|c| {
            grade
                .categories
                .iter()
                .find(|r| r.category_id == c.id)
                .and_then(|r| r.percent_bp)
                .map(|bp| fmt_hundredths(u64::from(bp)))
                .unwrap_or_default()
        }));
        row.push(grade.total_bp.map(|bp| fmt_hundredths(u64::from(bp))).unwrap_or_default());
        push_record(&mut out, &row);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Grading internals
// ---------------------------------------------------------------------------------------------

/// Scores per learner and item; a later score in the slice replaces an earlier one.
fn index_scores(scores: &[Score]) -> HashMap<Uuid, HashMap<Uuid, u32>> {
    let mut index: HashMap<Uuid, HashMap<Uuid, u32>> = HashMap::new();
    for score in scores {
        index.entry(score.learner_id).or_default().insert(score.item_id, score.points_hundredths);
    }
    index
}

/// A learner's grade from their scores by item id.
fn grade_with(
    learner: Uuid,
    own: &HashMap<Uuid, u32>,
    categories: &[Category],
    items: &[Item],
    missing: Missing,
) -> LearnerGrade {
    let mut results = Vec::with_capacity(categories.len());
    let mut weighted = Ratio::zero();
    let mut weight_sum: u64 = 0;
    for category in categories {
        let (exact, dropped) = category_percentage(category, own, items, missing);
        let percent_bp = exact.as_ref().map(Ratio::round_bp);
        if let Some(exact) = exact {
            let weight = u64::from(category.weight_percent);
            if weight > 0 {
                weight_sum = weight_sum.saturating_add(weight);
                weighted = weighted.add(&Ratio { num: exact.num.mul(&Big::from_u128(u128::from(weight))), ..exact });
            }
        }
        results.push(CategoryResult {
            category_id: category.id,
            name: category.name.clone(),
            weight_percent: category.weight_percent,
            percent_bp,
            dropped,
        });
    }
    let total_bp = (weight_sum > 0)
        .then(|| Ratio { den: weighted.den.mul(&Big::from_u128(u128::from(weight_sum))), ..weighted }.round_bp());
    LearnerGrade { learner_id: learner, categories: results, total_bp }
}

/// The exact category percentage (a fraction in 0..=1) and the dropped items.
fn category_percentage(
    category: &Category,
    own: &HashMap<Uuid, u32>,
    items: &[Item],
    missing: Missing,
) -> (Option<Ratio>, Vec<Uuid>) {
    // The counting item percentages, in `items` order.
    let counting: Vec<(Uuid, Frac)> = items
        .iter()
        .filter(|it| it.category_id == category.id && it.max_points > 0)
        .filter_map(|it| match (own.get(&it.id), missing) {
            (Some(&points), _) => Some((it.id, Frac::of_item(points, it.max_points))),
            (None, Missing::Zero) => Some((it.id, Frac::ZERO)),
            (None, Missing::Exclude) => None,
        })
        .collect();
    if counting.is_empty() {
        return (None, Vec::new());
    }

    // Stable sort: among equal percentages the earlier item in `items` order comes first.
    let mut order: Vec<usize> = (0..counting.len()).collect();
    order.sort_by(|&a, &b| counting[a].1.cmp_value(&counting[b].1));
    let drops = usize::try_from(category.drop_lowest).unwrap_or(usize::MAX).min(counting.len() - 1);
    let mut is_dropped = vec![false; counting.len()];
    for &i in order.iter().take(drops) {
        is_dropped[i] = true;
    }

    let mut sum = Ratio::zero();
    let mut kept: u64 = 0;
    let mut dropped = Vec::with_capacity(drops);
    for ((id, frac), &drop) in counting.iter().zip(&is_dropped) {
        if drop {
            dropped.push(*id);
        } else {
            sum = sum.add_small(frac.num, frac.den);
            kept += 1;
        }
    }
    // kept >= 1 because at most count - 1 items are dropped.
    let mean = Ratio { den: sum.den.mul(&Big::from_u128(u128::from(kept))), ..sum };
    (Some(mean), dropped)
}

/// Greatest common divisor (`gcd(0, b) == b`).
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// An item percentage as a reduced fraction `num / den` in 0..=1 (`den > 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frac {
    num: u64,
    den: u64,
}

impl Frac {
    const ZERO: Frac = Frac { num: 0, den: 1 };

    /// `points_hundredths / (100 × max_points)`, capped at 1; `max_points` must be positive.
    fn of_item(points_hundredths: u32, max_points: u32) -> Self {
        let den = u64::from(max_points) * 100;
        if den == 0 {
            return Self::ZERO;
        }
        let num = u64::from(points_hundredths).min(den);
        let g = gcd(num, den);
        Frac { num: num / g, den: den / g }
    }

    /// Compare by value (both denominators are below 2^39, so the products fit in `u128`).
    fn cmp_value(&self, other: &Self) -> Ordering {
        (u128::from(self.num) * u128::from(other.den)).cmp(&(u128::from(other.num) * u128::from(self.den)))
    }
}

/// An exact non-negative rational `num / den` (`den > 0`) of arbitrary precision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ratio {
    num: Big,
    den: Big,
}

impl Ratio {
    fn zero() -> Self {
        Ratio { num: Big::zero(), den: Big::from_u128(1) }
    }

    /// `self + a / b` over the least common denominator (`b > 0`), which keeps numbers small
    /// for ordinary point values.
    fn add_small(&self, a: u64, b: u64) -> Self {
        if b == 0 {
            return self.clone();
        }
        let (_, rem) = self.den.divmod_u64(b);
        let g = gcd(rem, b); // == gcd(den, b), and >= 1 because b > 0
        let b_over_g = Big::from_u128(u128::from(b / g));
        let (den_over_g, _) = self.den.divmod_u64(g);
        Ratio {
            num: self.num.mul(&b_over_g).add(&Big::from_u128(u128::from(a)).mul(&den_over_g)),
            den: self.den.mul(&b_over_g),
        }
    }

    /// `self + other` (denominators multiplied unless equal).
    fn add(&self, other: &Self) -> Self {
        if self.den == other.den {
            return Ratio { num: self.num.add(&other.num), den: self.den.clone() };
        }
        Ratio { num: self.num.mul(&other.den).add(&other.num.mul(&self.den)), den: self.den.mul(&other.den) }
    }

    /// `round_half_up(10000 × num / den)` for a value in 0..=1 (the result is clamped to
    /// 0..=10000): the largest `q` with `q × 2·den <= 20000·num + den`.
    fn round_bp(&self) -> u32 {
        let two_den = self.den.mul(&Big::from_u128(2));
        let rhs = self.num.mul(&Big::from_u128(20_000)).add(&self.den);
        let (mut lo, mut hi) = (0u32, 10_000u32);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if two_den.mul(&Big::from_u128(u128::from(mid))).cmp_value(&rhs) != Ordering::Greater {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }
}

/// A minimal arbitrary-precision unsigned integer: little-endian `u64` limbs without trailing
/// zero limbs (zero has no limbs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Big {
    limbs: Vec<u64>,
}

impl Big {
    fn zero() -> Self {
        Big { limbs: Vec::new() }
    }

    fn normalized(mut limbs: Vec<u64>) -> Self {
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
        Big { limbs }
    }

    fn from_u128(v: u128) -> Self {
        Self::normalized(vec![v as u64, (v >> 64) as u64])
    }

    fn add(&self, other: &Self) -> Self {
        let len = self.limbs.len().max(other.limbs.len());
        let mut out = Vec::with_capacity(len + 1);
        let mut carry: u128 = 0;
        for i in 0..len {
            let s = u128::from(self.limbs.get(i).copied().unwrap_or(0))
                + u128::from(other.limbs.get(i).copied().unwrap_or(0))
                + carry;
            out.push(s as u64);
            carry = s >> 64;
        }
        out.push(carry as u64);
        Self::normalized(out)
    }

    fn mul(&self, other: &Self) -> Self {
        if self.limbs.is_empty() || other.limbs.is_empty() {
            return Self::zero();
        }
        let mut out = vec![0u64; self.limbs.len() + other.limbs.len()];
        for (i, &x) in self.limbs.iter().enumerate() {
            let mut carry: u128 = 0;
            for (j, &y) in other.limbs.iter().enumerate() {
                // (2^64 - 1)^2 + 2 (2^64 - 1) = 2^128 - 1: never overflows.
                let t = u128::from(x) * u128::from(y) + u128::from(out[i + j]) + carry;
                out[i + j] = t as u64;
                carry = t >> 64;
            }
            out[i + other.limbs.len()] = carry as u64;
        }
        Self::normalized(out)
    }

    /// Quotient and remainder of the division by `d` (`d == 0` gives `(0, 0)`).
    fn divmod_u64(&self, d: u64) -> (Self, u64) {
        if d == 0 {
            return (Self::zero(), 0);
        }
        let d = u128::from(d);
        let mut quotient = vec![0u64; self.limbs.len()];
        let mut rem: u128 = 0;
        for (q, &limb) in quotient.iter_mut().zip(&self.limbs).rev() {
            let cur = (rem << 64) | u128::from(limb);
            *q = (cur / d) as u64;
            rem = cur % d;
        }
        (Self::normalized(quotient), rem as u64)
    }

    fn cmp_value(&self, other: &Self) -> Ordering {
        self.limbs.len().cmp(&other.limbs.len()).then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }
}

// ---------------------------------------------------------------------------------------------
// CSV internals
// ---------------------------------------------------------------------------------------------

/// `v / 100` with exactly two decimals: 850 → "8.50", 8537 → "85.37".
fn fmt_hundredths(v: u64) -> String {
    format!("{}.{:02}", v / 100, v % 100)
}

/// Append one CRLF-terminated record.
fn push_record(out: &mut String, fields: &[String]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_field(field));
    }
    out.push_str("\r\n");
}

/// Neutralise formula injection, then quote if needed (RFC 4180).
fn csv_field(raw: &str) -> String {
    let field =
        if raw.starts_with(['=', '+', '-', '@']) && !is_number(raw) { format!("'{raw}") } else { raw.to_owned() };
    if field.contains([',', '"', '\r', '\n']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field }
}

/// A plain decimal number: optional sign, digits with an optional fraction (at least one digit
/// in all), optional exponent. "-5", "+1.5", "-.5", "1e3" are numbers; "-", "=1", "-1+2" are not.
fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut mantissa = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn cat(n: u128, name: &str, weight_percent: u32, drop_lowest: u32) -> Category {
        Category { id: id(n), name: name.to_owned(), weight_percent, drop_lowest }
    }

    fn item(n: u128, category: u128, title: &str, max_points: u32) -> Item {
        Item { id: id(n), category_id: id(category), title: title.to_owned(), max_points }
    }

    fn score(learner: u128, item: u128, points_hundredths: u32) -> Score {
        Score { learner_id: id(learner), item_id: id(item), points_hundredths }
    }

    const ADA: u128 = 1000;
    const BOB: u128 = 1001;
    const QUIZZES: u128 = 1;
    const ASSIGNMENTS: u128 = 2;
    const Q1: u128 = 11;
    const Q2: u128 = 12;
    const Q3: u128 = 13;
    const A1: u128 = 21;
    const A2: u128 = 22;

    /// Quizzes 40 % (3 quizzes of 10 points, drop lowest 1), assignments 60 % (50 and 40 points).
    fn course() -> (Vec<Category>, Vec<Item>) {
        (
            vec![cat(QUIZZES, "Quizzes", 40, 1), cat(ASSIGNMENTS, "Assignments", 60, 0)],
            vec![
                item(Q1, QUIZZES, "Quiz 1", 10),
                item(Q2, QUIZZES, "Quiz 2", 10),
                item(Q3, QUIZZES, "Quiz 3", 10),
                item(A1, ASSIGNMENTS, "Essay", 50),
                item(A2, ASSIGNMENTS, "Project", 40),
            ],
        )
    }

    /// Ada: quizzes 8/10, 5/10, 9/10; assignments 45/50, 30/40.
    fn ada_scores() -> Vec<Score> {
        vec![score(ADA, Q1, 800), score(ADA, Q2, 500), score(ADA, Q3, 900), score(ADA, A1, 4500), score(ADA, A2, 3000)]
    }

    fn bp(grade: &LearnerGrade) -> Vec<Option<u32>> {
        grade.categories.iter().map(|c| c.percent_bp).collect()
    }

    #[test]
    fn weighted_categories_with_drop_lowest() {
        let (categories, items) = course();
        let g = learner_grade(id(ADA), &categories, &items, &ada_scores(), Missing::Zero);
        // Quizzes: 80 %, 50 %, 90 %; drop the 50 % → mean(80 %, 90 %) = 85 % = 8500 bp.
        // Assignments: 45/50 = 90 %, 30/40 = 75 % → mean = 82.5 % = 8250 bp (not 75/90 = 83.33 %).
        // Total: 0.4 · 85 + 0.6 · 82.5 = 34 + 49.5 = 83.5 % = 8350 bp.
        assert_eq!(bp(&g), vec![Some(8500), Some(8250)]);
        assert_eq!(g.total_bp, Some(8350));
        assert_eq!(g.categories[0].dropped, vec![id(Q2)]);
        assert!(g.categories[1].dropped.is_empty());
        assert_eq!(g.categories[0].name, "Quizzes");
        assert_eq!(g.categories[1].weight_percent, 60);
        assert_eq!(g.learner_id, id(ADA));
        // Everything graded: both modes agree.
        assert_eq!(learner_grade(id(ADA), &categories, &items, &ada_scores(), Missing::Exclude), g);
    }

    #[test]
    fn rounding_half_up_only_at_the_end() {
        let categories = vec![cat(1, "Thirds", 100, 0)];
        let items = vec![item(11, 1, "a", 3), item(12, 1, "b", 3), item(13, 1, "c", 3)];
        let scores = vec![score(ADA, 11, 100), score(ADA, 12, 100), score(ADA, 13, 200)];
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Zero);
        // mean(1/3, 1/3, 2/3) = (4/3) / 3 = 4/9 = 44.444… % → 4444.44 bp → 4444 bp.
        // (Rounding each item first would give 3333 + 3333 + 6667 = 13333 / 3 = 4444.33, also
        // 4444, but the total below shows that nothing is rounded twice.)
        assert_eq!(bp(&g), vec![Some(4444)]);
        assert_eq!(g.total_bp, Some(4444));

        // Exactly half a basis point rounds up: 0.01 of 200 points = 0.005 % = 0.5 bp → 1 bp.
        // A quarter basis point rounds down: 0.01 of 400 points = 0.25 bp → 0 bp.
        let categories = vec![cat(1, "Half", 50, 0), cat(2, "Quarter", 50, 0)];
        let items = vec![item(11, 1, "h", 200), item(21, 2, "q", 400)];
        let scores = vec![score(ADA, 11, 1), score(ADA, 21, 1)];
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Zero);
        assert_eq!(bp(&g), vec![Some(1), Some(0)]);
        // Total from the exact category values: 0.5 · 0.5 bp + 0.5 · 0.25 bp = 0.375 bp → 0 bp
        // (from the rounded ones it would be 0.5 · 1 + 0.5 · 0 = 0.5 bp → 1 bp).
        assert_eq!(g.total_bp, Some(0));
        // 2/3 = 6666.67 bp → 6667 bp.
        let g = learner_grade(id(ADA), &categories[..1], &[item(11, 1, "h", 3)], &[score(ADA, 11, 200)], Missing::Zero);
        assert_eq!((bp(&g), g.total_bp), (vec![Some(6667)], Some(6667)));
    }

    #[test]
    fn missing_exclude_versus_zero() {
        let (categories, items) = course();
        // Ada's project (A2) is not graded yet.
        let scores: Vec<Score> = ada_scores().into_iter().filter(|s| s.item_id != id(A2)).collect();

        // Exclude: assignments = 45/50 = 90 % = 9000 bp; quizzes 85 % as before.
        // Total = 0.4 · 85 + 0.6 · 90 = 34 + 54 = 88 % = 8800 bp.
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Exclude);
        assert_eq!(bp(&g), vec![Some(8500), Some(9000)]);
        assert_eq!(g.total_bp, Some(8800));

        // Zero: assignments = mean(90 %, 0 %) = 45 % = 4500 bp.
        // Total = 0.4 · 85 + 0.6 · 45 = 34 + 27 = 61 % = 6100 bp.
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Zero);
        assert_eq!(bp(&g), vec![Some(8500), Some(4500)]);
        assert_eq!(g.total_bp, Some(6100));
    }

    #[test]
    fn missing_zero_can_be_dropped_exclude_cannot() {
        let (categories, items) = course();
        // Ada took quizzes 1 and 2 only (8/10, 5/10).
        let scores = vec![score(ADA, Q1, 800), score(ADA, Q2, 500)];
        // Exclude: 80 %, 50 % count; drop 50 % → 80 %. Assignments have nothing → None, and the
        // total re-normalises to the quizzes alone: 80 %.
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Exclude);
        assert_eq!(bp(&g), vec![Some(8000), None]);
        assert_eq!(g.categories[0].dropped, vec![id(Q2)]);
        assert_eq!(g.total_bp, Some(8000));
        // Zero: 80 %, 50 %, 0 %; the missing quiz 3 is dropped → mean(80, 50) = 65 %.
        // Assignments 0 %, 0 % → 0 %. Total = 0.4 · 65 + 0.6 · 0 = 26 % = 2600 bp.
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Zero);
        assert_eq!(bp(&g), vec![Some(6500), Some(0)]);
        assert_eq!(g.categories[0].dropped, vec![id(Q3)]);
        assert_eq!(g.total_bp, Some(2600));
    }

    #[test]
    fn nothing_graded() {
        let (categories, items) = course();
        let g = learner_grade(id(BOB), &categories, &items, &ada_scores(), Missing::Exclude);
        assert_eq!(bp(&g), vec![None, None]);
        assert!(g.categories.iter().all(|c| c.dropped.is_empty()));
        assert_eq!(g.total_bp, None);
        // With Missing::Zero everything counts as 0 %: 0 % everywhere (one quiz dropped).
        let g = learner_grade(id(BOB), &categories, &items, &ada_scores(), Missing::Zero);
        assert_eq!(bp(&g), vec![Some(0), Some(0)]);
        assert_eq!(g.categories[0].dropped, vec![id(Q1)]);
        assert_eq!(g.total_bp, Some(0));
        // No categories at all.
        let g = learner_grade(id(BOB), &[], &[], &[], Missing::Zero);
        assert_eq!((g.categories.len(), g.total_bp), (0, None));
    }

    #[test]
    fn drop_lowest_never_drops_the_only_counting_item() {
        let (categories, items) = course();
        // Only quiz 2 (5/10) graded: drop_lowest 1 but it is the only counting item → 50 %.
        let scores = vec![score(ADA, Q2, 500)];
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Exclude);
        assert_eq!(bp(&g), vec![Some(5000), None]);
        assert!(g.categories[0].dropped.is_empty());
        assert_eq!(g.total_bp, Some(5000));

        // drop_lowest 5 with 3 counting items drops only 2: 8/10, 5/10, 9/10 → 90 % remains.
        let categories = vec![cat(QUIZZES, "Quizzes", 100, 5)];
        let g = learner_grade(id(ADA), &categories, &items, &ada_scores(), Missing::Exclude);
        assert_eq!(bp(&g), vec![Some(9000)]);
        assert_eq!(g.categories[0].dropped, vec![id(Q1), id(Q2)]);
    }

    #[test]
    fn ties_drop_the_first_item() {
        let categories = vec![cat(1, "Quizzes", 100, 1)];
        // 5/10 = 50 % and 10/20 = 50 % tie; quiz 12 comes first in items order → dropped.
        let items = vec![item(13, 1, "c", 10), item(12, 1, "b", 20), item(11, 1, "a", 10)];
        let scores = vec![score(ADA, 11, 500), score(ADA, 12, 1000), score(ADA, 13, 700)];
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Exclude);
        // mean(70 %, 50 %) = 60 %.
        assert_eq!(bp(&g), vec![Some(6000)]);
        assert_eq!(g.categories[0].dropped, vec![id(12)]);
    }

    #[test]
    fn capping_zero_point_items_and_duplicate_scores() {
        let categories = vec![cat(1, "Quizzes", 100, 0)];
        // Item 12 is worth 0 points → ignored. Item 11: 12/10 → capped at 100 %.
        // Item 13: scored 2/4 then re-released as 3/4 → the later score (75 %) wins.
        let items = vec![item(11, 1, "a", 10), item(12, 1, "b", 0), item(13, 1, "c", 4)];
        let scores = vec![score(ADA, 11, 1200), score(ADA, 12, 500), score(ADA, 13, 200), score(ADA, 13, 300)];
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Zero);
        // mean(100 %, 75 %) = 87.5 % = 8750 bp.
        assert_eq!(bp(&g), vec![Some(8750)]);
        assert_eq!(g.total_bp, Some(8750));
        assert_eq!(course_grades(&[id(ADA)], &categories, &items, &scores, Missing::Zero), vec![g]);
    }

    #[test]
    fn zero_weight_categories_and_unknown_items() {
        // A 0 % practice category: shown, but it never carries the total.
        let categories = vec![cat(1, "Practice", 0, 0), cat(2, "Exam", 100, 0)];
        let items = vec![item(11, 1, "p", 10), item(21, 2, "e", 10), item(31, 99, "orphan", 10)];
        let scores = vec![score(ADA, 11, 1000), score(ADA, 31, 0)];
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Exclude);
        assert_eq!(bp(&g), vec![Some(10000), None]);
        assert_eq!(g.total_bp, None);
        let scores = vec![score(ADA, 11, 1000), score(ADA, 21, 450)];
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Exclude);
        assert_eq!(g.total_bp, Some(4500));
    }

    #[test]
    fn huge_coprime_denominators_stay_exact() {
        // Max points that are large distinct primes: the common denominator exceeds u128.
        let primes = [4_294_967_291u32, 4_294_967_279, 4_294_967_231, 4_294_967_197, 4_294_967_189];
        let categories = vec![cat(1, "Big", 100, 0)];
        let items: Vec<Item> = primes.iter().enumerate().map(|(i, &p)| item(10 + i as u128, 1, "x", p)).collect();
        let scores: Vec<Score> = primes.iter().enumerate().map(|(i, &p)| score(ADA, 10 + i as u128, p)).collect();
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Zero);
        // Each score is p hundredths of p points = 1 % of the item → mean = 1 % = 100 bp.
        assert_eq!(bp(&g), vec![Some(100)]);
        let scores: Vec<Score> = primes.iter().enumerate().map(|(i, _)| score(ADA, 10 + i as u128, u32::MAX)).collect();
        let g = learner_grade(id(ADA), &categories, &items, &scores, Missing::Zero);
        // u32::MAX hundredths ≈ 42.9 M points of ≈ 4.29 G points each ≈ 0.1 % → about 10 bp.
        // Exactly: mean of (2^32 − 1) / (100 p) over the five primes; every term lies in
        // (0.01, 0.010001), so 10000 × mean lies in (100.0, 100.01) → 100 bp.
        assert_eq!(bp(&g), vec![Some(100)]);
    }

    #[test]
    fn big_integer_arithmetic() {
        let a = Big::from_u128(u128::MAX);
        let b = a.mul(&a).add(&Big::from_u128(1));
        let (q, r) = b.divmod_u64(7);
        assert_eq!(q.mul(&Big::from_u128(7)).add(&Big::from_u128(u128::from(r))), b);
        assert_eq!(b.cmp_value(&a), Ordering::Greater);
        assert_eq!(Big::zero().add(&Big::zero()), Big::zero());
        assert_eq!(Big::from_u128(0).limbs.len(), 0);
        // Five ~2^32 primes: the common denominator no longer fits in u128 (3 limbs).
        let primes = [4_294_967_291u64, 4_294_967_279, 4_294_967_231, 4_294_967_197, 4_294_967_189];
        let sum = primes.iter().fold(Ratio::zero(), |acc, &p| acc.add_small(1, p));
        assert_eq!(sum.den.limbs.len(), 3);
        // 1/3 + 1/6 = 1/2 over the least common denominator 6.
        let r = Ratio::zero().add_small(1, 3).add_small(1, 6);
        assert_eq!((r.num, r.den), (Big::from_u128(3), Big::from_u128(6)));
        assert_eq!(Ratio { num: Big::from_u128(1), den: Big::from_u128(1) }.round_bp(), 10_000);
    }

    #[test]
    fn validate_setup() {
        let (categories, items) = course();
        assert_eq!(validate(&categories, &items), Ok(()));

        let wrong = vec![cat(1, "Quizzes", 40, 0), cat(2, "Assignments", 50, 0)];
        // 40 + 50 = 90.
        assert_eq!(validate(&wrong, &[]), Err(GradebookError::WeightsDoNotSumTo100 { sum: 90 }));
        let overflow = vec![cat(1, "a", u32::MAX, 0), cat(2, "b", 101, 0)];
        assert_eq!(validate(&overflow, &[]), Err(GradebookError::WeightsDoNotSumTo100 { sum: u32::MAX }));

        let mut orphan = items.clone();
        orphan.push(item(99, 77, "Lost", 10));
        assert_eq!(validate(&categories, &orphan), Err(GradebookError::UnknownCategory { item: id(99) }));

        let drops_all = vec![cat(QUIZZES, "Quizzes", 40, 3), cat(ASSIGNMENTS, "Assignments", 60, 0)];
        assert_eq!(validate(&drops_all, &items), Err(GradebookError::DropsAllItems { category: id(QUIZZES) }));
        // A category without items may have any drop_lowest.
        let empty = vec![cat(QUIZZES, "Quizzes", 40, 3), cat(ASSIGNMENTS, "Assignments", 60, 0)];
        assert_eq!(validate(&empty, &items[3..]), Ok(()));

        let dup = vec![cat(1, "a", 50, 0), cat(1, "b", 50, 0)];
        assert_eq!(validate(&dup, &[]), Err(GradebookError::DuplicateCategory { id: id(1) }));

        let msg = GradebookError::WeightsDoNotSumTo100 { sum: 90 }.to_string();
        assert!(msg.contains("90"), "{msg}");
        let err: Box<dyn std::error::Error> = Box::new(GradebookError::DropsAllItems { category: id(1) });
        assert!(err.to_string().contains(&id(1).to_string()));
    }

    #[test]
    fn course_grades_keep_learner_order() {
        let (categories, items) = course();
        let mut scores = ada_scores();
        scores.push(score(BOB, Q1, 1000));
        let grades = course_grades(&[id(BOB), id(ADA), id(BOB)], &categories, &items, &scores, Missing::Exclude);
        let order: Vec<Uuid> = grades.iter().map(|g| g.learner_id).collect();
        assert_eq!(order, vec![id(BOB), id(ADA), id(BOB)]);
        // Bob: quiz 1 10/10 only → 100 % (nothing to drop), total re-normalised → 100 %.
        assert_eq!(grades[0].total_bp, Some(10000));
        assert_eq!(grades[1].total_bp, Some(8350));
        for g in &grades {
            assert_eq!(g, &learner_grade(g.learner_id, &categories, &items, &scores, Missing::Exclude));
        }
    }

    #[test]
    fn csv_export() {
        let categories = vec![cat(1, "Quizzes", 40, 0), cat(2, "Assignments", 60, 0)];
        let items = vec![
            item(11, 1, "Quiz 1", 10),
            item(12, 1, "Quiz 2", 10),
            item(21, 2, "Essay, final", 50),
            item(22, 2, "Ignored", 0),
        ];
        let scores = vec![
            score(ADA, 11, 850),
            score(ADA, 12, 900),
            score(ADA, 21, 4500),
            score(BOB, 11, 700),
            // Bob has not taken quiz 2 nor written the essay.
        ];
        let learners = [id(ADA), id(BOB)];
        let grades = course_grades(&learners, &categories, &items, &scores, Missing::Exclude);
        let labels = vec!["Ada Lovelace <ada@example.com>".to_owned(), "=HYPERLINK(\"x\")".to_owned()];
        let out = csv(&grades, &labels, &categories, &items, &scores);
        // Ada: quizzes mean(85 %, 90 %) = 87.5 %; essay 45/50 = 90 %;
        //      total 0.4 · 87.5 + 0.6 · 90 = 35 + 54 = 89 %.
        // Bob: quizzes 70 %; assignments none; total 70 % (re-normalised).
        let expected = format!(
            "learner_id,learner,Quiz 1 (10 pts),Quiz 2 (10 pts),\"Essay, final (50 pts)\",Quizzes %,Assignments %,total %\r\n\
             {},Ada Lovelace <ada@example.com>,8.50,9.00,45.00,87.50,90.00,89.00\r\n\
             {},\"'=HYPERLINK(\"\"x\"\")\",7.00,,,70.00,,70.00\r\n",
            id(ADA),
            id(BOB)
        );
        assert_eq!(out, expected);
        // Missing labels are empty; no grades → header only.
        let out = csv(&grades[..1], &[], &categories, &items, &scores);
        assert!(out.lines().nth(1).is_some_and(|l| l.starts_with(&format!("{},,8.50", id(ADA)))));
        assert_eq!(csv(&[], &[], &[], &[], &[]), "learner_id,learner,total %\r\n");
    }

    #[test]
    fn csv_fields() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field("cr\r"), "\"cr\r\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("+cmd"), "'+cmd");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("=a,b"), "\"'=a,b\"");
        assert_eq!(csv_field("-"), "'-");
        assert_eq!(csv_field("-5"), "-5");
        assert_eq!(csv_field("+1.50"), "+1.50");
        assert_eq!(csv_field("-.5"), "-.5");
        assert_eq!(csv_field("-1e3"), "-1e3");
        assert_eq!(csv_field("-1e"), "'-1e");
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field(""), "");
        assert_eq!(fmt_hundredths(850), "8.50");
        assert_eq!(fmt_hundredths(8537), "85.37");
        assert_eq!(fmt_hundredths(5), "0.05");
        assert_eq!(fmt_hundredths(10000), "100.00");
    }
}

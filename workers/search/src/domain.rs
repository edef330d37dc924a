//! What a search is and what is indexed: request validation, the cursor, the indexed form of a
//! published course. No I/O here.

use coursebus_contracts::catalog::{Course, Level, Price, PriceFilter};
use coursebus_contracts::search::{FacetCount, Highlights, PriceBand, SearchCoursesRequest, SearchHit};
use coursebus_contracts::validate::ValidationError;
use serde::{Deserialize, Serialize};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use time::OffsetDateTime;
use uuid::Uuid;

/// The longest `q`, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 50;
/// Pages end here: deeper paging costs every replica more and nobody reads that far.
pub const MAX_OFFSET: usize = 1_000;
/// At most this many tag values are counted in the facets (the most frequent).
pub const MAX_TAG_FACETS: usize = 50;
/// Relevance: a title match weighs this much more than a match elsewhere.
pub const TITLE_BOOST: f32 = 3.0;

/// Restrictions on what matches, beyond the words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub tag: Option<String>,
    pub level: Option<Level>,
    pub language: Option<String>,
    pub price: Option<PriceFilter>,
    pub price_band: Option<PriceBand>,
}

/// A validated search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The words, trimmed; empty means "every course matching the filters, newest first".
    pub text: String,
    pub filters: Filters,
    pub offset: usize,
    pub limit: usize,
}

impl SearchQuery {
    /// Validate a request; the error names the offending field.
    pub fn parse(req: SearchCoursesRequest) -> Result<Self, ValidationError> {
        let text: String = req.q.unwrap_or_default().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let text = text.trim().to_owned();
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(ValidationError::new("q", format!("q must be at most {MAX_QUERY_CHARS} characters")));
        }
        let tag = match req.tag.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => {
                let tag = raw.to_lowercase();
                if tag.len() > 32 || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(ValidationError::new("tag", "a tag is 1-32 characters of a-z, 0-9 and dashes"));
                }
                Some(tag)
            }
        };
        let language = match req.language.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => {
                let lang = raw.to_lowercase();
                if lang.len() != 2 || !lang.chars().all(|c| c.is_ascii_lowercase()) {
                    return Err(ValidationError::new("language", "language must be an ISO 639-1 code like en"));
                }
                Some(lang)
            }
        };
        let limit = match req.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT as u32).contains(&n) => n as usize,
            Some(_) => return Err(ValidationError::new("limit", format!("limit must be between 1 and {MAX_LIMIT}"))),
        };
        let offset = match req.cursor.as_deref() {
            None | Some("") => 0,
            Some(cursor) => decode_cursor(cursor)?,
        };
        Ok(Self {
            text,
            filters: Filters { tag, level: req.level, language, price: req.price, price_band: req.price_band },
            offset,
            limit,
        })
    }

    /// The cursor of the page after this one, if there is one.
    pub fn next_cursor(&self, returned: usize, total: u64) -> Option<String> {
        let next = self.offset + returned;
        (returned > 0 && (next as u64) < total && next <= MAX_OFFSET).then(|| encode_cursor(next))
    }
}

const CURSOR_PREFIX: &str = "o";

/// Cursors are opaque to clients; today they carry the offset of the next page.
pub fn encode_cursor(offset: usize) -> String {
    format!("{CURSOR_PREFIX}{offset}")
}

pub fn decode_cursor(cursor: &str) -> Result<usize, ValidationError> {
    cursor
        .strip_prefix(CURSOR_PREFIX)
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n <= MAX_OFFSET)
        .ok_or_else(|| ValidationError::new("cursor", "cursor is not one this service returned"))
}

/// The wire spelling of a level, as facets and filters use it.
pub fn level_str(level: Level) -> &'static str {
    match level {
        Level::Beginner => "beginner",
        Level::Intermediate => "intermediate",
        Level::Advanced => "advanced",
    }
}

/// A published course as the index sees it. Serialised as-is, it is also the OpenSearch
/// document (`_source`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseDoc {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub summary: String,
    #[serde(default)]
    pub description: String,
    /// Module and lesson titles.
    #[serde(default)]
    pub lessons: Vec<String>,
    pub tags: Vec<String>,
    pub level: Level,
    pub language: String,
    pub price: Price,
    pub price_band: PriceBand,
    pub instructor_id: Uuid,
    pub lesson_count: usize,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
}

impl CourseDoc {
    /// The searchable form of a published snapshot.
    pub fn from_course(course: &Course) -> Self {
        let lessons = course
            .modules
            .iter()
            .flat_map(|m| std::iter::once(m.title.clone()).chain(m.lessons.iter().map(|l| l.title.clone())))
            .collect();
        Self {
            id: course.id,
            slug: course.slug.clone(),
            title: course.title.clone(),
            summary: course.summary.clone(),
            description: course.description.clone(),
            lessons,
            tags: course.tags.clone(),
            level: course.level,
            language: course.language.clone(),
            price: course.price.clone(),
            price_band: PriceBand::of(&course.price),
            instructor_id: course.instructor_id,
            lesson_count: course.lesson_count(),
            published_at: course.published_at.unwrap_or(course.updated_at),
        }
    }

    /// Without the long fields a hit does not show (what the embedded index stores).
    pub fn stored(&self) -> Self {
        Self { description: String::new(), lessons: Vec::new(), ..self.clone() }
    }

    pub fn hit(self, score: f32) -> SearchHit {
        SearchHit {
            id: self.id,
            slug: self.slug,
            title: self.title,
            summary: self.summary,
            tags: self.tags,
            level: self.level,
            language: self.language,
            price: self.price,
            price_band: self.price_band,
            instructor_id: self.instructor_id,
            lesson_count: self.lesson_count,
            score,
            highlights: Highlights::default(),
        }
    }

    /// Milliseconds since the epoch, for ordering.
    pub fn published_at_millis(&self) -> i64 {
        (self.published_at.unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// Most frequent first, then by value, so every engine and replica orders facets alike.
pub fn sort_facet(counts: &mut Vec<FacetCount>, keep: usize) {
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    counts.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<SearchQuery, ValidationError> {
        SearchQuery::parse(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn defaults_and_normalisation() {
        let q = parse(serde_json::json!({"q": "  Rust\tbasics ", "tag": " Web-Dev ", "language": "EN"})).unwrap();
        assert_eq!(q.text, "Rust basics");
        assert_eq!(q.filters.tag.as_deref(), Some("web-dev"));
        assert_eq!(q.filters.language.as_deref(), Some("en"));
        assert_eq!((q.offset, q.limit), (0, DEFAULT_LIMIT));
        assert_eq!(parse(serde_json::json!({})).unwrap().text, "");
    }

    #[test]
    fn bad_input_names_the_field() {
        let long = "x".repeat(MAX_QUERY_CHARS + 1);
        assert_eq!(parse(serde_json::json!({ "q": long })).unwrap_err().field, "q");
        // 200 multi-byte characters are fine: the bound is in characters.
        assert!(parse(serde_json::json!({ "q": "é".repeat(MAX_QUERY_CHARS) })).is_ok());
        assert_eq!(parse(serde_json::json!({"limit": 0})).unwrap_err().field, "limit");
        assert_eq!(parse(serde_json::json!({"limit": 51})).unwrap_err().field, "limit");
        assert_eq!(parse(serde_json::json!({"tag": "no spaces"})).unwrap_err().field, "tag");
        assert_eq!(parse(serde_json::json!({"language": "eng"})).unwrap_err().field, "language");
        assert_eq!(parse(serde_json::json!({"cursor": "garbage"})).unwrap_err().field, "cursor");
        assert_eq!(parse(serde_json::json!({"cursor": "o999999"})).unwrap_err().field, "cursor");
    }

    #[test]
    fn cursors_round_trip_and_stop_at_the_end() {
        let q = parse(serde_json::json!({"limit": 2})).unwrap();
        let next = q.next_cursor(2, 5).unwrap();
        let q2 = parse(serde_json::json!({"limit": 2, "cursor": next})).unwrap();
        assert_eq!(q2.offset, 2);
        assert_eq!(q2.next_cursor(2, 5).as_deref(), Some("o4"));
        let q3 = parse(serde_json::json!({"limit": 2, "cursor": "o4"})).unwrap();
        assert_eq!(q3.next_cursor(1, 5), None);
        assert_eq!(q.next_cursor(0, 5), None);
    }
}

/// Only the first words of a long query count.
pub const MAX_WORDS: usize = 16;
/// Words shorter than this must match exactly.
pub const MIN_FUZZY_CHARS: usize = 4;
/// Prefixes shorter than this are not expanded (they would match nearly everything).
pub const MIN_PREFIX_CHARS: usize = 3;

/// The one analyzer of every text field and query: split on non-alphanumerics, lower-case, fold
/// accents, drop words over 40 bytes.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The analysed words of a query, de-duplicated, in order, at most [`MAX_WORDS`].
pub fn query_words(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut words: Vec<String> = Vec::new();
    while let Some(token) = stream.next() {
        if !words.contains(&token.text) {
            words.push(token.text.clone());
        }
    }
    words.truncate(MAX_WORDS);
    words
}

/// Edit distance with adjacent transpositions costing 1 (optimal string alignment), as the
/// engine's typo tolerance counts it.
fn osa_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Whether `token` (analysed) matches query word `word` the way the engine matches: exactly,
/// within one typo for words of [`MIN_FUZZY_CHARS`] or more, or as a prefix for the last word.
fn matches(token: &str, word: &str, last: bool) -> bool {
    let chars = word.chars().count();
    token == word
        || (chars >= MIN_FUZZY_CHARS && osa_distance(token, word) <= 1)
        || (last && chars >= MIN_PREFIX_CHARS && token.starts_with(word))
}

/// The character ranges of `text`'s words that match `words` (a query's analysed words).
pub fn highlight(text: &str, words: &[String]) -> Vec<[usize; 2]> {
    if words.is_empty() {
        return Vec::new();
    }
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut ranges = Vec::new();
    while let Some(token) = stream.next() {
        let hit = words.iter().enumerate().any(|(i, w)| matches(&token.text, w, i + 1 == words.len()));
        if hit {
            let start = text[..token.offset_from].chars().count();
            let end = start + text[token.offset_from..token.offset_to].chars().count();
            ranges.push([start, end]);
        }
    }
    ranges
}

/// Highlights of a hit for a query's words.
pub fn highlights(hit: &SearchHit, words: &[String]) -> Highlights {
    Highlights { title: highlight(&hit.title, words), summary: highlight(&hit.summary, words) }
}

#[cfg(test)]
mod highlight_tests {
    use super::*;

    #[test]
    fn highlights_follow_the_matching_rules() {
        let words = query_words("Rsut async");
        assert_eq!(words, ["rsut", "async"]);
        // "Rust" within one transposition, "Asynchronous" as a prefix of the last word; accents folded.
        assert_eq!(highlight("Rust: Asynchronous programming", &words), vec![[0, 4], [6, 18]]);
        assert_eq!(highlight("Crème brûlée for Rustaceans", &query_words("brulee")), vec![[6, 12]]);
        assert_eq!(highlight("Go in depth", &words), Vec::<[usize; 2]>::new());
        assert!(highlight("anything", &[]).is_empty());
        // Short words match exactly only.
        assert_eq!(highlight("Go to Git", &query_words("go")), vec![[0, 2]]);
        assert_eq!(osa_distance("rust", "rsut"), 1);
        assert_eq!(osa_distance("rust", "crust"), 1);
        assert_eq!(osa_distance("rust", "trusts"), 2);
    }
}

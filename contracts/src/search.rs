//! Search messages: full-text course search over the published catalog with filters and facet
//! counts.
//!
//! Only published courses are searchable: the search worker indexes the published snapshots it
//! reads from `EVT_CATALOG` and drops archived courses. Working copies never appear.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::catalog::{Level, Price, PriceFilter};
use crate::rpc::rpc;
use crate::subjects::search as subj;

/// A price band, by the price's amount in major units of its own currency (amounts are integer
/// minor units, assumed to have two decimals): `free` (0), `under_20` (more than 0, less than
/// 20), `20_to_50` (20 to 50 inclusive), `over_50` (more than 50).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum PriceBand {
    #[serde(rename = "free")]
    Free,
    #[serde(rename = "under_20")]
    Under20,
    #[serde(rename = "20_to_50")]
    From20To50,
    #[serde(rename = "over_50")]
    Over50,
}

impl PriceBand {
    pub const ALL: [PriceBand; 4] = [PriceBand::Free, PriceBand::Under20, PriceBand::From20To50, PriceBand::Over50];

    /// The wire spelling (`free`, `under_20`, `20_to_50`, `over_50`).
    pub fn as_str(self) -> &'static str {
        match self {
            PriceBand::Free => "free",
            PriceBand::Under20 => "under_20",
            PriceBand::From20To50 => "20_to_50",
            PriceBand::Over50 => "over_50",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|band| band.as_str() == raw)
    }

    /// The band of `price` (see the type's documentation for the bounds).
    pub fn of(price: &Price) -> Self {
        match price.amount_minor {
            ..=0 => PriceBand::Free,
            1..2_000 => PriceBand::Under20,
            2_000..=5_000 => PriceBand::From20To50,
            _ => PriceBand::Over50,
        }
    }
}

/// `GET /v1/search/courses?q=&tag=&level=&language=&price=&price_band=&cursor=&limit=`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchCoursesRequest {
    /// Words to look for in titles, summaries, descriptions, lesson titles and tags (at most
    /// 200 characters; one typo per word of 4 or more letters is forgiven). Empty or absent lists
    /// every published course matching the filters, newest first.
    #[serde(default)]
    pub q: Option<String>,
    /// Only courses with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub level: Option<Level>,
    /// ISO 639-1 code (`en`).
    #[serde(default)]
    pub language: Option<String>,
    /// Free or paid courses only.
    #[serde(default)]
    pub price: Option<PriceFilter>,
    /// Only courses in this price band.
    #[serde(default)]
    pub price_band: Option<PriceBand>,
    /// Opaque: the `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// 1 to 50 (default 10).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One matching course.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub tags: Vec<String>,
    pub level: Level,
    pub language: String,
    pub price: Price,
    pub price_band: PriceBand,
    pub instructor_id: Uuid,
    pub lesson_count: usize,
    /// Relevance to `q` (higher is better; 0 when `q` is empty). Only comparable within one reply.
    pub score: f32,
    /// Where `q`'s words occur in `title` and `summary` (also within one typo, and the last word
    /// as a prefix), for the client to emphasise; empty without `q`.
    #[serde(default)]
    pub highlights: Highlights,
}

/// Ranges `[start, end)` in characters (Unicode scalar values) of the field's text. Ranges, not
/// markup: a client renders them safely whatever the text holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Highlights {
    pub title: Vec<[usize; 2]>,
    pub summary: Vec<[usize; 2]>,
}

/// How many matching courses have one value of a facet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// Counts over every course matching the query and filters (not only the returned page), most
/// frequent first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Facets {
    pub tag: Vec<FacetCount>,
    pub level: Vec<FacetCount>,
    pub language: Vec<FacetCount>,
    pub price_band: Vec<FacetCount>,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    /// Best match first (newest first when `q` is empty).
    pub items: Vec<SearchHit>,
    /// How many published courses match in all.
    pub total: u64,
    pub facets: Facets,
    pub next_cursor: Option<String>,
}

rpc!(SearchCourses, SearchCoursesRequest, SearchResults, subj::COURSE_SEARCH);

#[cfg(test)]
mod tests {
    use super::*;

    fn price(amount_minor: i64) -> Price {
        Price { amount_minor, currency: "EUR".into() }
    }

    #[test]
    fn price_bands_have_inclusive_documented_bounds() {
        assert_eq!(PriceBand::of(&price(0)), PriceBand::Free);
        assert_eq!(PriceBand::of(&price(1)), PriceBand::Under20);
        assert_eq!(PriceBand::of(&price(1_999)), PriceBand::Under20);
        assert_eq!(PriceBand::of(&price(2_000)), PriceBand::From20To50);
        assert_eq!(PriceBand::of(&price(5_000)), PriceBand::From20To50);
        assert_eq!(PriceBand::of(&price(5_001)), PriceBand::Over50);
        for band in PriceBand::ALL {
            assert_eq!(serde_json::to_value(band).unwrap(), band.as_str());
            assert_eq!(PriceBand::parse(band.as_str()), Some(band));
        }
    }

    #[test]
    fn unknown_query_fields_are_rejected() {
        assert!(serde_json::from_str::<SearchCoursesRequest>(r#"{"q":"rust","sort":"price"}"#).is_err());
        let req: SearchCoursesRequest = serde_json::from_str(r#"{"price_band":"20_to_50"}"#).unwrap();
        assert_eq!(req.price_band, Some(PriceBand::From20To50));
    }
}

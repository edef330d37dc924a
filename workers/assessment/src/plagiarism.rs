//! Near-duplicate detection for text submissions.
//!
//! Every text submission of an assignment is compared with the other submissions of the same assignment.
//! The method is the classic one from web-scale near-duplicate detection (Broder's shingling + MinHash,
//! with locality-sensitive hashing to find candidates):
//!
//! 1. **Normalisation.** The text is lowercased (Unicode-aware, per character; a final sigma `ς` is folded
//!    to `σ` so that upper- and lowercase Greek agree) and split into *words*: maximal runs of alphanumeric
//!    characters ([`char::is_alphanumeric`]). Punctuation, whitespace, emoji and symbols only separate
//!    words, so changing punctuation, case or line breaks does not change anything. The byte range of every
//!    word in the original text is kept so that matches can be shown to the user.
//! 2. **Shingling.** Every run of `k` consecutive words (`k` = [`Params::shingle_words`], default 5) is a
//!    *shingle*, hashed to 64 bits (FNV-1a per word, then an order-sensitive chain of SplitMix64
//!    finalisers over the `k` word hashes). A document is represented by its *set* of shingle hashes.
//!    Texts with fewer than `k` words get one shingle of all their words; empty texts get none. Two
//!    documents are compared by the **Jaccard similarity** `|A ∩ B| / |A ∪ B|` of their shingle sets.
//!    With `k = 5`, sharing a shingle means sharing a five-word phrase, which almost never happens by
//!    accident between independently written texts, even on the same topic.
//! 3. **MinHash.** For each of `n` hash functions `h_p` (default `n` = 128) the signature stores
//!    `min_{x ∈ A} h_p(x)`. For a random permutation the probability that two sets have the same minimum
//!    is exactly their Jaccard similarity, so the fraction of equal signature positions estimates the
//!    similarity (standard error `sqrt(s(1-s)/n)` ≤ 0.044 for `n` = 128). The hash family is fixed and
//!    deterministic: `h_p(x) = mix(x ^ seed_p)` where `mix` is the SplitMix64 finaliser (a bijection on
//!    `u64` with full avalanche) and `seed_p` is the `p`-th output of a SplitMix64 generator started from
//!    a constant. No randomness is used at run time, so signatures are stable across runs and machines
//!    and can be stored.
//! 4. **LSH banding.** The signature is cut into `b` bands of `r` rows (default `b` = 32, `r` = 4). Two
//!    documents become a *candidate pair* when at least one band is identical. For a pair with Jaccard
//!    similarity `s` the probability of that is the S-curve
//!
//!    `P(s) = 1 - (1 - s^r)^b`
//!
//!    whose steep part lies around `(1/b)^(1/r) = (1/32)^(1/4) ≈ 0.42`, i.e. just below the default
//!    reporting threshold of 0.5. With `r = 4, b = 32`:
//!
//!    | s    | 0.2   | 0.3   | 0.4   | 0.5   | 0.6   | 0.7     | 0.8      |
//!    |------|-------|-------|-------|-------|-------|---------|----------|
//!    | P(s) | 0.050 | 0.229 | 0.564 | 0.873 | 0.988 | 0.99985 | > 0.9999 |
//!
//!    So a pair exactly at the threshold (`s = 0.5`) is caught with probability ≈ 0.873, a pair at
//!    `s = 0.3` only ≈ 0.229 of the time (and only then costs an exact comparison), and real copies
//!    (`s ≥ 0.6`) are practically always caught. Because the hash family is fixed, whether a given pair
//!    is caught is deterministic; the probabilities are over the choice of seeds (or, equivalently, over
//!    pairs of documents).
//! 5. **Exact check.** Only candidate pairs get the exact Jaccard similarity (a merge of the two sorted
//!    shingle-hash sets) and are reported when it is at least [`Params::report_threshold`]. LSH therefore
//!    only affects recall, never precision: every reported similarity is exact (up to 64-bit hash
//!    collisions, which are negligible at these set sizes).
//! 6. **Passages.** For a reported pair, the shingle positions shared by the two texts are merged along
//!    diagonals: `(i, j), (i+1, j+1), …` form a run. A run of `m` shingles covers `m + k - 1` words and
//!    is mapped back to the byte range from the start of its first word to the end of its last word in
//!    each original text. The longest runs are reported first (at most 10); a run whose words on *both*
//!    sides already lie inside reported passages is skipped. Shingles that occur more than 16 times in
//!    either text (boilerplate such as a repeated heading) do not start a run, which keeps the passage
//!    search near-linear even for pathological, highly repetitive input; they can still be part of a run
//!    that is started by a rarer shingle.
//!
//! Limitations: there is no Unicode normalisation (NFC/NFD), so a decomposed accent splits a word; the
//! method detects copied wording, not paraphrase or translation.

use std::collections::HashMap;
use std::ops::Range;

/// Tuning; `Default` gives the values below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Words per shingle (`k`); default 5. A value of 0 is treated as 1.
    pub shingle_words: usize,
    /// MinHash signature length; default 128.
    pub num_hashes: usize,
    /// Number of LSH bands; default 32, giving `num_hashes / bands` = 4 rows per band. Clamped to
    /// `1..=num_hashes`; signature positions beyond `bands * rows` are not used for banding.
    pub bands: usize,
    /// Exact Jaccard similarity at or above which a pair is reported as a match; default 0.5.
    pub report_threshold: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { shingle_words: 5, num_hashes: 128, bands: 32, report_threshold: 0.5 }
    }
}

impl Params {
    /// Effective shingle length (at least one word).
    fn k(&self) -> usize {
        self.shingle_words.max(1)
    }
}

/// At most this many passages are reported per match.
const MAX_PASSAGES: usize = 10;
/// Shingles occurring more often than this in either text do not seed passage runs.
const MAX_SEED_OCCURRENCES: usize = 16;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
/// Start of the SplitMix64 sequence the MinHash seeds are drawn from. Changing it changes every stored
/// signature.
const SIGNATURE_SEED: u64 = 0x636f_7572_7365_6275; // "coursebu"
/// Seed of the shingle hash chain.
const SHINGLE_SEED: u64 = 0x706c_6167_6961_7269; // "plagiari"

/// SplitMix64 finaliser: a bijection on `u64` with good avalanche behaviour.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `p`-th seed of the MinHash hash family (the `p`-th output of SplitMix64 from `SIGNATURE_SEED`).
fn permutation_seed(p: usize) -> u64 {
    mix64(SIGNATURE_SEED.wrapping_add((p as u64).wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// Order-sensitive hash of a window of word hashes.
fn shingle_hash(words: &[u64]) -> u64 {
    words.iter().fold(mix64(SHINGLE_SEED ^ words.len() as u64), |h, &w| mix64(h ^ w))
}

/// Splits `text` into words (maximal runs of alphanumeric characters) and returns their byte ranges and
/// the hashes of their lowercased forms.
fn tokenize(text: &str) -> (Vec<Range<usize>>, Vec<u64>) {
    let mut ranges = Vec::new();
    let mut hashes = Vec::new();
    let mut start: Option<usize> = None;
    let mut hash = FNV_OFFSET;
    let mut buf = [0u8; 4];
    for (idx, c) in text.char_indices() {
        if c.is_alphanumeric() {
            if start.is_none() {
                start = Some(idx);
                hash = FNV_OFFSET;
            }
            for lower in c.to_lowercase() {
                let lower = if lower == 'ς' { 'σ' } else { lower };
                for &byte in lower.encode_utf8(&mut buf).as_bytes() {
                    hash ^= u64::from(byte);
                    hash = hash.wrapping_mul(FNV_PRIME);
                }
            }
        } else if let Some(s) = start.take() {
            ranges.push(s..idx);
            hashes.push(mix64(hash));
        }
    }
    if let Some(s) = start {
        ranges.push(s..text.len());
        hashes.push(mix64(hash));
    }
    (ranges, hashes)
}

/// A document prepared for comparison (normalised words with their character ranges in the original text,
/// shingle set, MinHash signature).
///
/// Build it once per submission with [`Fingerprint::new`]; all fingerprints that are compared with each
/// other must be built with the same [`Params`] (fingerprints with a different shingle length or signature
/// length are never matched with each other).
#[derive(Debug, Clone)]
pub struct Fingerprint {
    /// Effective shingle length the fingerprint was built with.
    k: usize,
    /// Words covered by one shingle: `k`, or the word count for texts with fewer than `k` words.
    span: usize,
    /// Byte length of the original text (sanity check for passage extraction).
    text_len: usize,
    /// Byte range of every word in the original text.
    words: Vec<Range<usize>>,
    /// Shingle hash at every shingle position (shingle `i` starts at word `i`).
    positions: Vec<u64>,
    /// Sorted, deduplicated shingle hashes.
    set: Vec<u64>,
    /// MinHash signature.
    signature: Vec<u64>,
}

impl Fingerprint {
    /// Normalise: Unicode-aware lowercase, words = maximal runs of alphanumeric chars
    /// ([`char::is_alphanumeric`]), punctuation and whitespace ignored.
    /// Texts with fewer than `shingle_words` words get one shingle of all their words (or none if empty).
    ///
    /// Runs in time linear in the text length (times `num_hashes` per distinct shingle for the
    /// signature). Never panics.
    pub fn new(text: &str, params: &Params) -> Fingerprint {
        let k = params.k();
        let (words, word_hashes) = tokenize(text);
        let span = k.min(words.len());
        let positions: Vec<u64> =
            if span == 0 { Vec::new() } else { word_hashes.windows(span).map(shingle_hash).collect() };
        let mut set = positions.clone();
        set.sort_unstable();
        set.dedup();

        let seeds: Vec<u64> = (0..params.num_hashes).map(permutation_seed).collect();
        let mut signature = vec![u64::MAX; params.num_hashes];
        for &shingle in &set {
            for (slot, &seed) in signature.iter_mut().zip(&seeds) {
                let value = mix64(shingle ^ seed);
                if value < *slot {
                    *slot = value;
                }
            }
        }
        Fingerprint { k, span, text_len: text.len(), words, positions, set, signature }
    }

    /// Number of distinct shingles (0 for a text without words).
    pub fn shingle_count(&self) -> usize {
        self.set.len()
    }

    /// The MinHash signature (len = params.num_hashes).
    ///
    /// Position `p` holds the minimum of `mix(x ^ seed_p)` over all shingle hashes `x`; it is `u64::MAX`
    /// everywhere for an empty text.
    pub fn signature(&self) -> &[u64] {
        &self.signature
    }

    /// Whether two fingerprints can be compared at all (same construction parameters, both non-empty).
    fn comparable(&self, other: &Fingerprint) -> bool {
        self.k == other.k
            && self.signature.len() == other.signature.len()
            && !self.set.is_empty()
            && !other.set.is_empty()
    }

    /// Exact Jaccard similarity of the shingle sets (0.0 when both are empty).
    fn jaccard(&self, other: &Fingerprint) -> f64 {
        let (a, b) = (&self.set, &other.set);
        let (mut i, mut j, mut common) = (0, 0, 0usize);
        while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
            match x.cmp(y) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    common += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        let union = a.len() + b.len() - common;
        if union == 0 { 0.0 } else { common as f64 / union as f64 }
    }

    /// MinHash estimate of the Jaccard similarity: fraction of equal signature positions.
    fn estimate(&self, other: &Fingerprint) -> f64 {
        let len = self.signature.len().min(other.signature.len());
        if len == 0 || self.set.is_empty() || other.set.is_empty() {
            return 0.0;
        }
        let equal = self.signature.iter().zip(&other.signature).filter(|(x, y)| x == y).count();
        equal as f64 / len as f64
    }
}

/// A passage shared by two texts: byte ranges (valid UTF-8 boundaries) into each original text.
///
/// `a` indexes the target text, `b` the other text of the [`Match`]; `words` is the number of words in
/// the passage (the same on both sides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// Byte range in the target text (start of the first word .. end of the last word).
    pub a: std::ops::Range<usize>,
    /// Byte range in the other text.
    pub b: std::ops::Range<usize>,
    /// Number of words in the passage (at least `shingle_words`).
    pub words: usize,
}

/// One compared pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Index of the other document in the input slice.
    pub other: usize,
    /// Exact Jaccard similarity of the shingle sets, `0.0..=1.0`.
    pub similarity: f64,
    /// MinHash estimate (fraction of equal signature positions).
    pub estimated: f64,
    /// Overlapping passages, longest first, at most 10, each at least `shingle_words` words.
    pub passages: Vec<Passage>,
}

/// Band layout `(bands, rows)` for a signature of `len` positions, or `None` when there is no signature.
fn band_layout(len: usize, params: &Params) -> Option<(usize, usize)> {
    if len == 0 {
        return None;
    }
    let bands = params.bands.clamp(1, len);
    Some((bands, len / bands))
}

/// Whether two signatures agree on at least one complete band.
fn shares_band(a: &[u64], b: &[u64], bands: usize, rows: usize) -> bool {
    a.chunks_exact(rows).zip(b.chunks_exact(rows)).take(bands).any(|(x, y)| x == y)
}

/// For document `target` among `docs` (all submissions of one assignment, target included), the other
/// documents whose exact Jaccard similarity is >= params.report_threshold, closest first. Candidates come
/// from LSH banding (a pair is a candidate when any band of their signatures is identical); only candidates
/// get the exact Jaccard + passage computation.
///
/// `texts[i]` must be the text `docs[i]` was built from; it is used to validate the passage byte ranges
/// (a missing or mismatching text yields a match without passages). An out-of-range `target`, an empty
/// target text or `num_hashes == 0` yields no matches. Ties are ordered by estimate, then by index.
pub fn closest_matches(target: usize, docs: &[Fingerprint], texts: &[&str], params: &Params) -> Vec<Match> {
    let Some(t) = docs.get(target) else {
        return Vec::new();
    };
    let Some((bands, rows)) = band_layout(t.signature.len(), params) else {
        return Vec::new();
    };
    let mut matches = Vec::new();
    for (other, d) in docs.iter().enumerate() {
        if other == target || !t.comparable(d) || !shares_band(&t.signature, &d.signature, bands, rows) {
            continue;
        }
        let similarity = t.jaccard(d);
        if similarity >= params.report_threshold {
            let passages = match (texts.get(target), texts.get(other)) {
                (Some(ta), Some(tb)) => passages(t, ta, d, tb),
                _ => Vec::new(),
            };
            matches.push(Match { other, similarity, estimated: t.estimate(d), passages });
        }
    }
    matches.sort_by(|x, y| {
        y.similarity.total_cmp(&x.similarity).then(y.estimated.total_cmp(&x.estimated)).then(x.other.cmp(&y.other))
    });
    matches
}

/// All pairs (i < j) above the threshold, via LSH buckets (not an O(n²) scan of signatures for large n),
/// sorted by similarity descending.
///
/// Every band of every non-empty document is put into a hash bucket keyed by the band's contents; only
/// documents sharing a bucket are compared exactly. Pairs with equal similarity are ordered by `(i, j)`.
pub fn similar_pairs(docs: &[Fingerprint], params: &Params) -> Vec<(usize, usize, f64)> {
    // Key: (shingle length, signature length, band index, band contents).
    let mut buckets: HashMap<(usize, usize, usize, &[u64]), Vec<usize>> = HashMap::new();
    for (i, d) in docs.iter().enumerate() {
        if d.set.is_empty() {
            continue;
        }
        let Some((bands, rows)) = band_layout(d.signature.len(), params) else {
            continue;
        };
        for (band, chunk) in d.signature.chunks_exact(rows).take(bands).enumerate() {
            buckets.entry((d.k, d.signature.len(), band, chunk)).or_default().push(i);
        }
    }
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    for members in buckets.values().filter(|m| m.len() > 1) {
        for (n, &i) in members.iter().enumerate() {
            candidates.extend(members.iter().skip(n + 1).map(|&j| (i, j)));
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    let mut pairs: Vec<(usize, usize, f64)> = candidates
        .into_iter()
        .filter_map(|(i, j)| {
            let (a, b) = (docs.get(i)?, docs.get(j)?);
            let similarity = a.jaccard(b);
            (similarity >= params.report_threshold).then_some((i, j, similarity))
        })
        .collect();
    pairs.sort_by(|x, y| y.2.total_cmp(&x.2).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));
    pairs
}

/// A maximal run of shared shingles: positions `a..a+len` in A equal `b..b+len` in B.
#[derive(Debug, Clone, Copy)]
struct Run {
    a: usize,
    b: usize,
    len: usize,
}

/// Maximal runs of shared shingles between two fingerprints (unordered).
fn shared_runs(pa: &[u64], pb: &[u64]) -> Vec<Run> {
    let (na, nb) = (pa.len(), pb.len());
    let mut in_b: HashMap<u64, Vec<usize>> = HashMap::new();
    for (j, &h) in pb.iter().enumerate() {
        in_b.entry(h).or_default().push(j);
    }
    let mut count_a: HashMap<u64, usize> = HashMap::new();
    for &h in pa {
        *count_a.entry(h).or_default() += 1;
    }
    // Seeds (diagonal, i, j) with diagonal = i + nb - j (always >= 1).
    let mut seeds: Vec<(usize, usize, usize)> = Vec::new();
    for (i, h) in pa.iter().enumerate() {
        if count_a.get(h).copied().unwrap_or(0) > MAX_SEED_OCCURRENCES {
            continue;
        }
        match in_b.get(h) {
            Some(js) if js.len() <= MAX_SEED_OCCURRENCES => seeds.extend(js.iter().map(|&j| (i + nb - j, i, j))),
            _ => {}
        }
    }
    seeds.sort_unstable();

    // Safety net against pathological input: total diagonal steps are bounded.
    let mut budget = 64usize.saturating_mul(na + nb).saturating_add(4096);
    let mut runs = Vec::new();
    let (mut diagonal, mut covered_until) = (usize::MAX, 0);
    for (d, i, j) in seeds {
        if d == diagonal && i < covered_until {
            continue; // inside the run found from an earlier seed on this diagonal
        }
        let (mut si, mut sj) = (i, j);
        while si > 0 && sj > 0 && budget > 0 && pa.get(si - 1) == pb.get(sj - 1) {
            si -= 1;
            sj -= 1;
            budget -= 1;
        }
        let (mut ei, mut ej) = (i + 1, j + 1);
        while ei < na && ej < nb && budget > 0 && pa.get(ei) == pb.get(ej) {
            ei += 1;
            ej += 1;
            budget -= 1;
        }
        runs.push(Run { a: si, b: sj, len: ei - si });
        diagonal = d;
        covered_until = ei;
        if budget == 0 {
            break;
        }
    }
    runs
}

/// Overlapping passages of two documents, longest first, at most [`MAX_PASSAGES`].
fn passages(a: &Fingerprint, text_a: &str, b: &Fingerprint, text_b: &str) -> Vec<Passage> {
    let k = a.k;
    // Texts shorter than `k` words have a single shingle of fewer than `k` words: no passage qualifies.
    if a.text_len != text_a.len() || b.text_len != text_b.len() || a.span < k || b.span < k || b.k != k {
        return Vec::new();
    }
    let mut runs = shared_runs(&a.positions, &b.positions);
    runs.sort_by(|x, y| y.len.cmp(&x.len).then(x.a.cmp(&y.a)).then(x.b.cmp(&y.b)));

    let mut reported: Vec<(Range<usize>, Range<usize>)> = Vec::new(); // shingle ranges
    let mut out = Vec::new();
    for run in runs {
        if out.len() >= MAX_PASSAGES {
            break;
        }
        let (ra, rb) = (run.a..run.a + run.len, run.b..run.b + run.len);
        let covered_a = reported.iter().any(|(x, _)| x.start <= ra.start && ra.end <= x.end);
        let covered_b = reported.iter().any(|(_, y)| y.start <= rb.start && rb.end <= y.end);
        if covered_a && covered_b {
            continue;
        }
        let words = run.len + k - 1;
        let (Some(byte_a), Some(byte_b)) =
            (byte_range(&a.words, run.a, words, text_a), byte_range(&b.words, run.b, words, text_b))
        else {
            continue;
        };
        reported.push((ra, rb));
        out.push(Passage { a: byte_a, b: byte_b, words });
    }
    out
}

/// Byte range from the start of word `first` to the end of word `first + count - 1`, if it is a valid
/// slice of `text`.
fn byte_range(words: &[Range<usize>], first: usize, count: usize, text: &str) -> Option<Range<usize>> {
    let start = words.get(first)?.start;
    let end = words.get((first + count).checked_sub(1)?)?.end;
    text.get(start..end).map(|_| start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESSAY: &str = "The invention of the movable type printing press in the middle of the fifteenth century \
transformed the way knowledge travelled across Europe. Before Johannes Gutenberg began his experiments in Mainz, \
books were copied by hand, usually by monks working in quiet scriptoria, and a single volume could take many months \
to complete. Because every copy demanded so much labour, books were rare, expensive and mostly owned by churches, \
universities and wealthy families.\n\nGutenberg combined several existing technologies in a new way. He adapted the \
screw press that farmers used for making wine, developed an oil based ink that would stick to metal, and, most \
importantly, cast individual letters from an alloy of lead, tin and antimony. These letters could be arranged into \
lines, locked into a frame, inked and pressed onto paper again and again. When a page was finished the type could be \
taken apart and reused for the next one.\n\nThe effects were dramatic. Within fifty years printing shops had opened \
in more than two hundred cities, and millions of books were in circulation. Prices fell, literacy slowly rose, and \
ideas could spread faster than any authority could control them. Scholars could compare identical editions of \
ancient texts, which encouraged careful criticism and the correction of errors. Merchants printed price lists and \
maps, while reformers such as Martin Luther used pamphlets to reach ordinary readers in their own languages.\n\n\
Historians still debate how revolutionary the press really was. Some argue that manuscript culture survived for \
generations and that printing merely accelerated trends that had already begun. Others believe that without cheap \
printed books the scientific revolution and the rise of modern nation states would have been impossible. Either way, \
the humble printing press remains one of the most influential machines ever built, and its legacy can be seen in \
every newspaper, textbook and web page we read today.";

    /// The essay with a few words changed, two sentences swapped, different punctuation and case.
    const NEAR_COPY: &str = "THE INVENTION of the movable-type printing press in the middle of the fifteenth \
century changed the way knowledge travelled across Europe; before Johannes Gutenberg began his experiments in \
Mainz books were copied by hand -- usually by monks working in silent scriptoria -- and a single volume could take \
many months to complete. Because every copy demanded so much labour, books were rare, expensive, and mostly owned by \
churches, universities and wealthy families. Gutenberg combined several existing technologies in a new way: he \
adapted the screw press that farmers used for making wine, developed an oil-based ink that would stick to metal and \
(most importantly) cast individual letters from an alloy of lead, tin and antimony! These letters could be arranged \
into lines, locked into a frame, inked and pressed onto paper again and again. When a page was finished the type \
could be taken apart and reused for the next one. The effects were enormous. Prices fell, literacy slowly rose, and \
ideas could spread faster than any authority could control them. Within fifty years printing shops had opened in \
more than two hundred cities, and millions of books were in circulation. Scholars could compare identical editions \
of ancient texts, which encouraged careful criticism and the correction of mistakes. Merchants printed price lists \
and maps, while reformers such as Martin Luther used pamphlets to reach ordinary readers in their own languages. \
Historians still debate how revolutionary the press really was... Some argue that manuscript culture survived for \
generations and that printing merely accelerated trends that had already begun. Others believe that without cheap \
printed books the scientific revolution and the rise of modern nation states would have been impossible. Either \
way, the humble printing press remains one of the most influential machines ever built, and its legacy can be seen \
in every newspaper, textbook and website we read today.";

    const PHOTOSYNTHESIS_A: &str = "Photosynthesis is the process by which green plants, algae and some bacteria \
capture the energy of sunlight and store it in the chemical bonds of sugar. It takes place mainly in the leaves, \
inside small structures called chloroplasts that contain the green pigment chlorophyll. Chlorophyll absorbs red and \
blue light very well but reflects green light, which is why most leaves look green to our eyes. The overall reaction \
is simple to write down: carbon dioxide from the air and water from the soil are combined, using light energy, to \
produce glucose and oxygen. In reality the process happens in two connected stages. In the light dependent \
reactions, which occur in the thylakoid membranes, light splits water molecules, releasing oxygen as a by-product \
and generating the energy carriers ATP and NADPH. In the second stage, known as the Calvin cycle, these carriers \
power the fixation of carbon dioxide into three carbon sugars in the stroma. The rate of photosynthesis depends on \
several limiting factors, including light intensity, the concentration of carbon dioxide and temperature. If any \
one of these is in short supply, increasing the others will make little difference. Farmers who grow tomatoes in \
greenhouses sometimes add extra carbon dioxide to the air for exactly this reason. Photosynthesis is essential for \
almost all life on Earth. It provides the oxygen that animals breathe and the food at the base of nearly every food \
chain.";

    const PHOTOSYNTHESIS_B: &str = "Every breath we take depends on a quiet chemical factory that runs in billions \
of leaves around the planet. Plants do not eat in the way animals do; instead they build their own food out of thin \
air, water and light. When sunlight strikes a leaf, special molecules trap a portion of its energy. Plants then use \
that captured energy to pull apart water drawn up through the roots and to attach carbon atoms taken from the \
atmosphere onto growing chains. The result is sugar, which the plant can burn for energy at night or turn into \
starch, cellulose and oils. Oxygen is released through tiny pores on the underside of the leaf, and it is this \
leftover gas that fills our lungs. Scientists first began to understand the process in the seventeen hundreds, when \
Joseph Priestley noticed that a sprig of mint could restore air in which a candle had burned out. Later experiments \
by Jan Ingenhousz showed that light was necessary and that only the green parts of plants were able to do the job. \
Today researchers study the process in great detail because it may help us face modern challenges. Crops that make \
better use of sunlight could feed a growing population, and artificial leaves that copy nature might one day \
produce clean fuels. Understanding how a simple blade of grass turns sunshine into stored energy is therefore not \
only a lesson in biology but also a clue to a sustainable future.";

    const VOCABULARY: &[&str] = &[
        "river", "stone", "cloud", "market", "engine", "garden", "silver", "window", "theory", "harbor", "lantern",
        "quickly", "under", "between", "ancient", "modern", "signal", "forest", "copper", "island", "museum", "pencil",
        "valley", "winter", "summer", "orbit", "canyon", "ladder", "mirror", "violin", "tunnel", "desert", "anchor",
        "bridge", "castle", "dragon", "ember", "feather", "glacier", "hammer", "ivory", "jungle", "kettle", "lemon",
        "meadow", "needle", "ocean", "pepper", "quartz", "rocket", "saddle", "timber", "umbrella", "velvet", "walnut",
        "yellow", "zephyr", "across", "beyond", "carry", "deliver", "explain", "follow", "gather", "hover", "imagine",
        "juggle", "kindle", "listen", "measure", "notice", "observe", "protect", "question", "remember", "shelter",
        "travel", "uncover", "visit", "wander", "bright", "calm", "distant", "eager", "fragile", "gentle", "hollow",
        "narrow", "patient", "quiet", "rapid", "steady", "tender", "vivid", "wooden", "and", "the", "of", "with",
    ];

    /// Deterministic pseudo-random text of `len` words from `VOCABULARY`.
    fn generated(seed: u64, len: usize) -> String {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234_5678;
        let mut words = Vec::with_capacity(len);
        for n in 0..len {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let idx = ((state >> 33) % VOCABULARY.len() as u64) as usize;
            let word = VOCABULARY[idx];
            words.push(if n % 11 == 10 { format!("{word}.") } else { word.to_string() });
        }
        words.join(" ")
    }

    fn fp(text: &str) -> Fingerprint {
        Fingerprint::new(text, &Params::default())
    }

    fn normalised_words(text: &str) -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
    }

    #[test]
    fn s_curve_numbers_in_module_docs_are_right() {
        let p = |s: f64| 1.0 - (1.0 - s.powi(4)).powi(32);
        assert!((p(0.5) - 0.873).abs() < 0.0005, "{}", p(0.5));
        assert!((p(0.3) - 0.229).abs() < 0.0005, "{}", p(0.3));
        assert!((p(0.2) - 0.050).abs() < 0.0005, "{}", p(0.2));
        assert!((p(0.4) - 0.564).abs() < 0.0005, "{}", p(0.4));
        assert!((p(0.6) - 0.988).abs() < 0.0005, "{}", p(0.6));
        assert!((p(0.7) - 0.99985).abs() < 0.00001, "{}", p(0.7));
        assert!(p(0.8) > 0.9999);
    }

    #[test]
    fn near_copy_is_found_with_passages_covering_the_copied_text() {
        let params = Params::default();
        let texts = [ESSAY, NEAR_COPY];
        let docs: Vec<Fingerprint> = texts.iter().map(|t| Fingerprint::new(t, &params)).collect();
        assert!(normalised_words(ESSAY).len() >= 300);

        let matches = closest_matches(0, &docs, &texts, &params);
        assert_eq!(matches.len(), 1, "{matches:?}");
        let m = &matches[0];
        assert_eq!(m.other, 1);
        assert!(m.similarity > 0.6, "similarity {}", m.similarity);
        assert!(m.similarity <= 1.0);
        assert!(!m.passages.is_empty() && m.passages.len() <= MAX_PASSAGES);

        // Longest first, each at least k words, both sides slice to the same words.
        for pair in m.passages.windows(2) {
            assert!(pair[0].words >= pair[1].words);
        }
        for p in &m.passages {
            assert!(p.words >= params.shingle_words);
            let wa = normalised_words(&ESSAY[p.a.clone()]);
            let wb = normalised_words(&NEAR_COPY[p.b.clone()]);
            assert_eq!(wa, wb);
            assert_eq!(wa.len(), p.words);
        }

        // Most of the essay's words are inside a reported passage.
        let (ranges, _) = tokenize(ESSAY);
        let covered = ranges.iter().filter(|w| m.passages.iter().any(|p| p.a.start <= w.start && w.end <= p.a.end));
        let coverage = covered.count() as f64 / ranges.len() as f64;
        assert!(coverage > 0.8, "coverage {coverage}");

        // Symmetric from the other side.
        let back = closest_matches(1, &docs, &texts, &params);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].other, 0);
        assert_eq!(back[0].similarity, m.similarity);
    }

    #[test]
    fn different_essays_on_the_same_topic_are_not_reported() {
        let params = Params::default();
        let texts = [PHOTOSYNTHESIS_A, PHOTOSYNTHESIS_B];
        let docs: Vec<Fingerprint> = texts.iter().map(|t| Fingerprint::new(t, &params)).collect();
        assert!(normalised_words(PHOTOSYNTHESIS_A).len() >= 200);
        assert!(normalised_words(PHOTOSYNTHESIS_B).len() >= 200);
        assert!(docs[0].jaccard(&docs[1]) < 0.2);
        assert!(closest_matches(0, &docs, &texts, &params).is_empty());
        assert!(closest_matches(1, &docs, &texts, &params).is_empty());
        assert!(similar_pairs(&docs, &params).is_empty());
    }

    /// 50 documents: the essay at 0, its near-copy at 37, 48 generated texts elsewhere.
    fn fifty() -> (Vec<String>, Vec<Fingerprint>) {
        let mut texts: Vec<String> = (0..50u64).map(|i| generated(i, 150 + (i as usize * 7) % 120)).collect();
        texts[0] = ESSAY.to_string();
        texts[37] = NEAR_COPY.to_string();
        let docs = texts.iter().map(|t| fp(t)).collect();
        (texts, docs)
    }

    #[test]
    fn target_among_fifty_finds_exactly_the_near_copy() {
        let (texts, docs) = fifty();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let matches = closest_matches(0, &docs, &refs, &Params::default());
        assert_eq!(matches.iter().map(|m| m.other).collect::<Vec<_>>(), vec![37]);
        // An unrelated generated text matches nothing.
        assert!(closest_matches(5, &docs, &refs, &Params::default()).is_empty());
    }

    #[test]
    fn similar_pairs_among_fifty_is_exactly_the_one_pair() {
        let (_, docs) = fifty();
        let pairs = similar_pairs(&docs, &Params::default());
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!((pairs[0].0, pairs[0].1), (0, 37));
        assert!((pairs[0].2 - docs[0].jaccard(&docs[37])).abs() < 1e-12);
    }

    #[test]
    fn empty_and_tiny_texts_do_not_panic_and_match_only_when_identical() {
        let params = Params::default();
        let texts = ["", "   ...  ", "🎉🎉 👍🏽", "Hello!", "hello", "World", "one two three", "One, two; three.", "x"];
        let docs: Vec<Fingerprint> = texts.iter().map(|t| Fingerprint::new(t, &params)).collect();
        assert_eq!(docs[0].shingle_count(), 0);
        assert_eq!(docs[1].shingle_count(), 0);
        assert_eq!(docs[2].shingle_count(), 0);
        assert_eq!(docs[3].shingle_count(), 1);
        assert_eq!(docs[6].shingle_count(), 1);
        assert_eq!(docs[0].signature().len(), params.num_hashes);

        for target in [0, 1, 2, 5, 8] {
            assert!(closest_matches(target, &docs, &texts, &params).is_empty(), "target {target}");
        }
        let hello = closest_matches(3, &docs, &texts, &params);
        assert_eq!(hello.len(), 1);
        assert_eq!(hello[0].other, 4);
        assert_eq!(hello[0].similarity, 1.0);
        assert_eq!(hello[0].estimated, 1.0);
        assert!(hello[0].passages.is_empty(), "fewer than shingle_words words: no passage");
        let three = closest_matches(6, &docs, &texts, &params);
        assert_eq!(three.iter().map(|m| m.other).collect::<Vec<_>>(), vec![7]);
        assert_eq!(similar_pairs(&docs, &params).iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(), vec![(3, 4), (6, 7)]);

        // Out-of-range target, missing texts, empty inputs.
        assert!(closest_matches(99, &docs, &texts, &params).is_empty());
        assert!(closest_matches(0, &[], &[], &params).is_empty());
        assert!(similar_pairs(&[], &params).is_empty());
        let no_texts = closest_matches(3, &docs, &[], &params);
        assert_eq!(no_texts.len(), 1);
    }

    #[test]
    fn unicode_text_gives_valid_byte_ranges() {
        let a = "Ünïcødé wörds — ΟΔΟΣ 🎉 straße naïve café 東京 タワー ok. Fin!";
        let b = "intro… ünïcødé WÖRDS, οδος straße NAÏVE café 東京 タワー ok";
        let params = Params { shingle_words: 3, ..Params::default() };
        let docs = [Fingerprint::new(a, &params), Fingerprint::new(b, &params)];
        let matches = closest_matches(0, &docs, &[a, b], &params);
        assert_eq!(matches.len(), 1, "{matches:?}");
        let p = &matches[0].passages[0];
        assert_eq!(p.words, 9);
        assert_eq!(&a[p.a.clone()], "Ünïcødé wörds — ΟΔΟΣ 🎉 straße naïve café 東京 タワー ok");
        assert_eq!(&b[p.b.clone()], "ünïcødé WÖRDS, οδος straße NAÏVE café 東京 タワー ok");
    }

    #[test]
    fn odd_params_and_long_or_repetitive_texts_do_not_panic() {
        let long = generated(7, 60_000);
        let odd = [
            Params { shingle_words: 0, num_hashes: 0, bands: 0, report_threshold: 0.5 },
            Params { shingle_words: 1, num_hashes: 7, bands: 100, report_threshold: f64::NAN },
            Params { shingle_words: 50, num_hashes: 10, bands: 3, report_threshold: -1.0 },
        ];
        for params in odd {
            let texts = [ESSAY, NEAR_COPY, "", "a"];
            let docs: Vec<Fingerprint> = texts.iter().map(|t| Fingerprint::new(t, &params)).collect();
            for t in 0..texts.len() {
                let _ = closest_matches(t, &docs, &texts, &params);
            }
            let _ = similar_pairs(&docs, &params);
        }
        // Fingerprints built with different params are never matched.
        let other = Params { num_hashes: 64, ..Params::default() };
        let mixed = [fp(ESSAY), Fingerprint::new(ESSAY, &other)];
        assert!(closest_matches(0, &mixed, &[ESSAY, ESSAY], &Params::default()).is_empty());

        // Long texts: a document and itself with a changed middle.
        let mut edited = long.clone();
        edited.replace_range(long.len() / 2..long.len() / 2 + 6, "XYZZY ");
        let texts = [long.as_str(), edited.as_str()];
        let docs = [fp(&long), fp(&edited)];
        let m = closest_matches(0, &docs, &texts, &Params::default());
        assert_eq!(m.len(), 1);
        assert!(m[0].passages.len() >= 2);
        assert!(m[0].passages[0].words > 20_000);

        // Highly repetitive texts must not blow up the passage search.
        let rep_a = "the cat sat on the mat ".repeat(20_000);
        let rep_b = format!("{} and then {}", "the cat sat on the mat ".repeat(10_000), "the the the ".repeat(10_000));
        let texts = [rep_a.as_str(), rep_b.as_str()];
        let docs = [fp(&rep_a), fp(&rep_b)];
        let params = Params { report_threshold: 0.0, ..Params::default() };
        let _ = closest_matches(0, &docs, &texts, &params);
        let _ = closest_matches(1, &docs, &texts, &params);
    }

    #[test]
    fn minhash_estimate_tracks_exact_jaccard() {
        let base: Vec<String> = generated(1000, 600).split(' ').map(str::to_string).collect();
        let filler: Vec<String> = generated(2000, 600).split(' ').map(str::to_string).collect();
        let a = fp(&base.join(" "));
        let mut seen = Vec::new();
        for keep in [560, 420, 300, 180, 90] {
            let mixed: Vec<&str> =
                base[..keep].iter().chain(filler[keep..].iter()).map(String::as_str).collect::<Vec<_>>();
            let b = fp(&mixed.join(" "));
            let (exact, estimate) = (a.jaccard(&b), a.estimate(&b));
            assert!((exact - estimate).abs() <= 0.15, "keep {keep}: exact {exact} estimate {estimate}");
            seen.push(exact);
        }
        // The pairs really span a range of similarities.
        assert!(seen[0] > 0.8 && seen[4] < 0.15, "{seen:?}");
        assert!(seen.iter().any(|&s| (0.3..0.7).contains(&s)), "{seen:?}");
        // And for the essay pair.
        let (e, c) = (fp(ESSAY), fp(NEAR_COPY));
        assert!((e.jaccard(&c) - e.estimate(&c)).abs() <= 0.15);
    }

    #[test]
    fn results_are_deterministic() {
        let first = fp(ESSAY);
        let second = fp(ESSAY);
        assert_eq!(first.signature(), second.signature());
        assert_eq!(first.shingle_count(), second.shingle_count());
        // Case and punctuation do not matter.
        assert_eq!(
            fp("The quick brown fox, jumps over the lazy dog!").signature(),
            fp("the QUICK brown fox jumps -- over the lazy dog").signature()
        );
        // Pinned values: a change here invalidates every stored signature.
        let pinned = fp("The quick brown fox jumps over the lazy dog");
        assert_eq!(pinned.shingle_count(), 5);
        assert_eq!(
            &pinned.signature()[..3],
            &[2_704_898_539_320_549_815, 269_747_211_349_683_187, 894_670_411_557_848_159]
        );
        let (texts, docs) = fifty();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        assert_eq!(
            closest_matches(0, &docs, &refs, &Params::default()),
            closest_matches(0, &docs, &refs, &Params::default())
        );
    }
}

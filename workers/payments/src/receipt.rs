//! Payment receipts as PDF documents.
//!
//! [`render_pdf`] lays out a one-page A4 receipt (invoice) for a course purchase: the seller, the invoice number
//! and date, who was billed, the order and payment references, and a small table with the course, any discount,
//! the total paid and, after a refund, the refunded and net amounts. [`format_money`] formats integer minor units
//! with the currency's ISO 4217 exponent, without floating point.
//!
//! The document uses the base-14 fonts Helvetica and Helvetica-Bold with `WinAnsiEncoding`, so no font is
//! embedded and every PDF reader has the glyphs. Text is converted to WinAnsi (Windows-1252) bytes; characters
//! outside that set are shown as `?`. Lines that could overflow (a long course title, a long name) are shortened
//! with `...` using the fonts' standard advance widths. The content stream is written uncompressed.

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};
use time::macros::format_description;

pub use coursebus_contracts::payments::format_money;

/// What a receipt shows. Amounts are integer minor units of `currency` (ISO 4217, upper case).
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The invoice number, e.g. `"2026-000042"`.
    pub invoice_number: String,
    /// When the receipt was issued; its date is shown in the offset this value carries.
    pub issued_at: time::OffsetDateTime,
    /// The platform name, e.g. `"coursebus"`.
    pub seller: String,
    /// The buyer's name.
    pub buyer_name: String,
    /// The buyer's email address.
    pub buyer_email: String,
    /// The order the payment was for.
    pub order_id: uuid::Uuid,
    /// The payment provider's reference, e.g. a Stripe PaymentIntent id `"pi_..."`.
    pub payment_reference: String,
    /// The title of the course bought.
    pub course_title: String,
    /// The ISO 4217 currency code, upper case, e.g. `"EUR"`.
    pub currency: String,
    /// The course's list price.
    pub list_price_minor: i64,
    /// The discount granted (`>= 0`); shown as a line when greater than zero.
    pub discount_minor: i64,
    /// The coupon that gave the discount, if any.
    pub coupon_code: Option<String>,
    /// The amount paid: list price minus discount.
    pub total_minor: i64,
    /// The amount refunded (`>= 0`); when greater than zero a refund line and the net amount are shown.
    pub refunded_minor: i64,
}

/// A4 in PostScript points.
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
const MARGIN: f32 = 56.0;
/// Where right-aligned text ends.
const RIGHT: f32 = PAGE_WIDTH - MARGIN;
/// Where values start in the label/value block.
const VALUE_X: f32 = MARGIN + 110.0;
/// Space kept between a table line's description and its amount.
const COLUMN_GAP: f32 = 24.0;
/// The most characters (including the ellipsis) a course title is shown with.
const MAX_TITLE_CHARS: usize = 60;
const ELLIPSIS: &str = "...";
const MUTED: f32 = 0.4;
const RULE: f32 = 0.7;

/// The two fonts of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    /// The font's name in the page's resource dictionary.
    fn resource(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
        }
    }

    /// The base-14 font's PostScript name.
    fn base_font(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"Helvetica"),
            Font::Bold => Name(b"Helvetica-Bold"),
        }
    }

    /// Advance widths (1/1000 em) of WinAnsi codes 32..=255.
    fn widths(self) -> &'static [u16; 224] {
        match self {
            Font::Regular => &HELVETICA_WIDTHS,
            Font::Bold => &HELVETICA_BOLD_WIDTHS,
        }
    }
}

/// Helvetica advance widths (Adobe core-14 AFM) for WinAnsi codes 32..=255; 0 for codes [`win_ansi`] never
/// produces (DEL and the unassigned 0x81, 0x8D, 0x8F, 0x90, 0x9D).
#[rustfmt::skip]
const HELVETICA_WIDTHS: [u16; 224] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, 0,
    556, 0, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 0, 611, 0,
    0, 222, 222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 0, 500, 667,
    278, 333, 556, 556, 556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    400, 584, 333, 333, 333, 556, 537, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,
];

/// Helvetica-Bold advance widths (Adobe core-14 AFM) for WinAnsi codes 32..=255; 0 for codes [`win_ansi`] never
/// produces.
#[rustfmt::skip]
const HELVETICA_BOLD_WIDTHS: [u16; 224] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, 0,
    556, 0, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 0, 611, 0,
    0, 278, 278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 0, 500, 667,
    278, 333, 556, 556, 556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    400, 584, 333, 333, 333, 611, 556, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278,
    611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,
];

/// The WinAnsiEncoding (Windows-1252) byte for `c`.
///
/// Printable ASCII and Latin-1 (U+00A0..=U+00FF) map to themselves, the characters Windows-1252 places in
/// 0x80..=0x9F (`€`, `–`, `—`, curly quotes, `•`, `…`, `™`, ...) map to their codes, control characters become a
/// space, and anything else becomes `?`.
fn win_ansi_byte(c: char) -> u8 {
    match c {
        ' '..='~' | '\u{a0}'..='\u{ff}' => u8::try_from(c).unwrap_or(b'?'),
        '\u{0}'..='\u{1f}' | '\u{7f}' => b' ',
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8a,
        '‹' => 0x8b,
        'Œ' => 0x8c,
        'Ž' => 0x8e,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9a,
        '›' => 0x9b,
        'œ' => 0x9c,
        'ž' => 0x9e,
        'Ÿ' => 0x9f,
        _ => b'?',
    }
}

/// `text` as WinAnsiEncoding bytes, one byte per character (see [`win_ansi_byte`]).
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars().map(win_ansi_byte).collect()
}

/// The width of `text` in points when set in `font` at `size`.
fn text_width(text: &str, font: Font, size: f32) -> f32 {
    let widths = font.widths();
    let units: u32 = win_ansi(text)
        .into_iter()
        .map(|byte| byte.checked_sub(32).and_then(|index| widths.get(usize::from(index))).copied().unwrap_or(0))
        .map(u32::from)
        .sum();
    // Exact for any realistic length: an f32 holds integers up to 2^24 exactly.
    units as f32 * size / 1000.0
}

/// `text` unchanged when it has at most `max_chars` characters and is at most `max_width` points wide in `font` at
/// `size`; otherwise its longest prefix that, followed by `...`, meets both limits.
fn fit(text: &str, font: Font, size: f32, max_width: f32, max_chars: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max_chars && text_width(text, font, size) <= max_width {
        return text.to_owned();
    }
    let mut keep = chars.len().min(max_chars.saturating_sub(ELLIPSIS.len()));
    loop {
        let head: String = chars.iter().take(keep).collect();
        let candidate = format!("{}{ELLIPSIS}", head.trim_end());
        if keep == 0 || text_width(&candidate, font, size) <= max_width {
            return candidate;
        }
        keep -= 1;
    }
}

/// `date` as `YYYY-MM-DD`.
fn format_date(date: time::Date) -> String {
    date.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_else(|_| format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day()))
}

/// A content stream being written, with text helpers.
struct Page {
    content: Content,
}

impl Page {
    fn new() -> Self {
        Page { content: Content::new() }
    }

    /// Writes `text` with its left edge at `x` and its baseline at `y`, in grey `gray` (0 is black).
    fn text(&mut self, x: f32, y: f32, font: Font, size: f32, gray: f32, text: &str) {
        let bytes = win_ansi(text);
        self.content.set_fill_gray(gray);
        self.content.begin_text();
        self.content.set_font(font.resource(), size);
        self.content.next_line(x, y);
        self.content.show(Str(&bytes));
        self.content.end_text();
    }

    /// Writes `text` with its right edge at `right` and its baseline at `y`.
    fn text_right(&mut self, right: f32, y: f32, font: Font, size: f32, gray: f32, text: &str) {
        self.text(right - text_width(text, font, size), y, font, size, gray, text);
    }

    /// Draws a horizontal rule across the text area at `y`.
    fn rule(&mut self, y: f32, width: f32) {
        self.content.set_stroke_gray(RULE);
        self.content.set_line_width(width);
        self.content.move_to(MARGIN, y);
        self.content.line_to(RIGHT, y);
        self.content.stroke();
    }

    /// A label (grey) and its value, the value shortened to fit the text area.
    fn field(&mut self, y: f32, label: &str, value: &str) {
        self.text(MARGIN, y, Font::Regular, 9.0, MUTED, label);
        let value = fit(value, Font::Regular, 10.0, RIGHT - VALUE_X, usize::MAX);
        self.text(VALUE_X, y, Font::Regular, 10.0, 0.0, &value);
    }

    /// A table line: `description` on the left (shortened to `max_chars` and to the room the amount leaves) and
    /// `amount` right-aligned.
    fn line_item(&mut self, y: f32, font: Font, description: &str, max_chars: usize, amount: &str) {
        const SIZE: f32 = 11.0;
        self.text_right(RIGHT, y, font, SIZE, 0.0, amount);
        let room = RIGHT - MARGIN - COLUMN_GAP - text_width(amount, font, SIZE);
        let description = fit(description, font, SIZE, room, max_chars);
        self.text(MARGIN, y, font, SIZE, 0.0, &description);
    }
}

/// Draws the receipt onto a page's content stream.
fn draw(page: &mut Page, receipt: &Receipt) {
    let money = |minor: i64| format_money(minor, &receipt.currency);
    let full_width = RIGHT - MARGIN;

    let mut y = PAGE_HEIGHT - 80.0;
    page.text(MARGIN, y, Font::Bold, 26.0, 0.0, "Receipt");
    y -= 24.0;
    page.text(MARGIN, y, Font::Bold, 13.0, 0.0, &fit(&receipt.seller, Font::Bold, 13.0, full_width, usize::MAX));
    y -= 18.0;
    let invoice = format!("Invoice {}", receipt.invoice_number);
    page.text(MARGIN, y, Font::Regular, 10.0, 0.0, &fit(&invoice, Font::Regular, 10.0, full_width, usize::MAX));
    y -= 14.0;
    page.text(MARGIN, y, Font::Regular, 10.0, 0.0, &format!("Issued {}", format_date(receipt.issued_at.date())));
    y -= 16.0;
    page.rule(y, 0.5);

    y -= 24.0;
    page.field(y, "Billed to", &receipt.buyer_name);
    y -= 14.0;
    page.field(y, "", &receipt.buyer_email);
    y -= 20.0;
    page.field(y, "Order ID", &receipt.order_id.hyphenated().to_string());
    y -= 14.0;
    page.field(y, "Payment reference", &receipt.payment_reference);

    y -= 40.0;
    page.text(MARGIN, y, Font::Bold, 9.0, MUTED, "Description");
    page.text_right(RIGHT, y, Font::Bold, 9.0, MUTED, "Amount");
    y -= 7.0;
    page.rule(y, 0.5);
    y -= 18.0;
    page.line_item(y, Font::Regular, &receipt.course_title, MAX_TITLE_CHARS, &money(receipt.list_price_minor));
    if receipt.discount_minor > 0 {
        y -= 18.0;
        let label = match receipt.coupon_code.as_deref().map(str::trim).filter(|code| !code.is_empty()) {
            Some(code) => format!("Discount ({code})"),
            None => "Discount".to_owned(),
        };
        page.line_item(y, Font::Regular, &label, usize::MAX, &money(receipt.discount_minor.saturating_neg()));
    }
    y -= 10.0;
    page.rule(y, 0.8);
    y -= 18.0;
    page.line_item(y, Font::Bold, "Total paid", usize::MAX, &money(receipt.total_minor));
    if receipt.refunded_minor > 0 {
        y -= 18.0;
        page.line_item(y, Font::Regular, "Refunded", usize::MAX, &money(receipt.refunded_minor.saturating_neg()));
        y -= 18.0;
        let net = receipt.total_minor.saturating_sub(receipt.refunded_minor);
        page.line_item(y, Font::Bold, "Net", usize::MAX, &money(net));
    }

    let thanks = format!("Thank you for learning with {}.", receipt.seller);
    page.text(MARGIN, MARGIN, Font::Regular, 9.0, MUTED, &fit(&thanks, Font::Regular, 9.0, full_width, usize::MAX));
}

/// Renders `receipt` as a one-page A4 PDF document (the bytes start with `%PDF-`).
///
/// The text uses the non-embedded base-14 fonts Helvetica and Helvetica-Bold in WinAnsiEncoding; characters
/// outside Windows-1252 are shown as `?`. Course titles longer than 60 characters, or wider than the table leaves
/// room for, are shortened with `...`. The page content is not compressed.
pub fn render_pdf(receipt: &Receipt) -> Vec<u8> {
    let catalog_id = Ref::new(1);
    let page_tree_id = Ref::new(2);
    let page_id = Ref::new(3);
    let content_id = Ref::new(4);
    let regular_id = Ref::new(5);
    let bold_id = Ref::new(6);
    let info_id = Ref::new(7);

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(page_tree_id);
    pdf.pages(page_tree_id).kids([page_id]).count(1);
    {
        let mut page = pdf.page(page_id);
        page.parent(page_tree_id).media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT)).contents(content_id);
        page.resources().fonts().pair(Font::Regular.resource(), regular_id).pair(Font::Bold.resource(), bold_id);
    }
    for (id, font) in [(regular_id, Font::Regular), (bold_id, Font::Bold)] {
        pdf.type1_font(id).base_font(font.base_font()).encoding_predefined(Name(b"WinAnsiEncoding"));
    }

    let mut page = Page::new();
    draw(&mut page, receipt);
    let content = page.content.finish();
    pdf.stream(content_id, &content);

    let title = format!("Receipt {}", receipt.invoice_number);
    pdf.document_info(info_id).title(TextStr(&title)).author(TextStr(&receipt.seller)).creator(TextStr("coursebus"));
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> Receipt {
        Receipt {
            invoice_number: "2026-000042".to_owned(),
            issued_at: datetime!(2026-03-14 09:30 UTC),
            seller: "coursebus".to_owned(),
            buyer_name: "Jane Doe".to_owned(),
            buyer_email: "jane@example.com".to_owned(),
            order_id: uuid::Uuid::from_u128(0x0192_5f1e_7c3a_7b2d_9e4f_1a2b_3c4d_5e6f),
            payment_reference: "pi_3PqRsT2eZvKYlo2C1a2b3c4d".to_owned(),
            course_title: "Rust for Backend Developers".to_owned(),
            currency: "EUR".to_owned(),
            list_price_minor: 4900,
            discount_minor: 1000,
            coupon_code: Some("SPRING26".to_owned()),
            total_minor: 3900,
            refunded_minor: 0,
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle)
    }

    /// `text` the way pdf-writer writes a non-ASCII string: its WinAnsi bytes as an upper-case hex string.
    fn hex_string(text: &str) -> Vec<u8> {
        let hex: String = win_ansi(text).iter().map(|byte| format!("{byte:02X}")).collect();
        format!("<{hex}>").into_bytes()
    }

    #[test]
    fn maps_text_to_win_ansi() {
        assert_eq!(win_ansi("Aé€–—‘’“”•"), [b'A', 0xe9, 0x80, 0x96, 0x97, 0x91, 0x92, 0x93, 0x94, 0x95]);
        assert_eq!(win_ansi("ÿ\u{a0}…™"), [0xff, 0xa0, 0x85, 0x99]);
        assert_eq!(win_ansi("日本 ₹ \u{81}"), b"?? ? ?");
        assert_eq!(win_ansi("a\tb\n"), b"a b ");
    }

    #[test]
    fn measures_helvetica() {
        assert!((text_width("EUR 12.50", Font::Regular, 10.0) - 48.91).abs() < 1e-3);
        assert!((text_width("Total", Font::Bold, 1000.0) - 2389.0).abs() < 1e-3);
        assert!((text_width("é€", Font::Regular, 1000.0) - 1112.0).abs() < 1e-3);
        assert!((text_width("±·", Font::Regular, 1000.0) - 862.0).abs() < 1e-3);
        assert!((text_width("µ", Font::Bold, 1000.0) - 611.0).abs() < 1e-3);
    }

    #[test]
    fn fit_keeps_short_text_and_shortens_long_text() {
        assert_eq!(fit("Short", Font::Regular, 11.0, 300.0, 60), "Short");
        let long = "a".repeat(100);
        let fitted = fit(&long, Font::Regular, 11.0, 1000.0, 60);
        assert_eq!(fitted, format!("{}...", "a".repeat(57)));
        let wide = "W".repeat(80);
        let fitted = fit(&wide, Font::Bold, 11.0, 200.0, 60);
        assert!(fitted.ends_with("...") && text_width(&fitted, Font::Bold, 11.0) <= 200.0, "{fitted}");
        assert_eq!(fit("WWW", Font::Regular, 11.0, 1.0, 60), "...");
    }

    #[test]
    fn formats_the_issue_date() {
        assert_eq!(format_date(time::macros::date!(2026 - 03 - 04)), "2026-03-04");
    }

    #[test]
    fn pdf_has_header_and_trailer() {
        let pdf = render_pdf(&sample());
        assert!(pdf.starts_with(b"%PDF-"));
        let end = pdf.strip_suffix(b"\n").unwrap_or(&pdf);
        assert!(end.ends_with(b"%%EOF"));
        assert!(contains(&pdf, b"/BaseFont /Helvetica"));
        assert!(contains(&pdf, b"/BaseFont /Helvetica-Bold"));
        assert!(contains(&pdf, b"/WinAnsiEncoding"));
        assert!(!contains(&pdf, b"/FlateDecode"));
        assert!(!contains(&pdf, b"/FontFile"));
    }

    #[test]
    fn pdf_contains_the_receipt_text() {
        let pdf = render_pdf(&sample());
        for text in [
            "Receipt",
            "coursebus",
            "Invoice 2026-000042",
            "Issued 2026-03-14",
            "Jane Doe",
            "jane@example.com",
            "01925f1e-7c3a-7b2d-9e4f-1a2b3c4d5e6f",
            "pi_3PqRsT2eZvKYlo2C1a2b3c4d",
            "Rust for Backend Developers",
            "EUR 49.00",
            "Discount (SPRING26)",
            "EUR -10.00",
            "Total paid",
            "EUR 39.00",
        ] {
            assert!(contains(&pdf, format!("({text})").as_bytes()), "missing {text}");
        }
        assert!(!contains(&pdf, b"(Refunded)"));
        assert!(!contains(&pdf, b"(Net)"));
    }

    #[test]
    fn pdf_shows_refund_and_net() {
        let receipt = Receipt { refunded_minor: 1500, coupon_code: None, ..sample() };
        let pdf = render_pdf(&receipt);
        for text in ["Discount", "Refunded", "EUR -15.00", "Net", "EUR 24.00"] {
            assert!(contains(&pdf, format!("({text})").as_bytes()), "missing {text}");
        }
    }

    #[test]
    fn pdf_leaves_out_a_zero_discount() {
        let receipt = Receipt { discount_minor: 0, coupon_code: None, total_minor: 4900, ..sample() };
        let pdf = render_pdf(&receipt);
        assert!(!contains(&pdf, b"Discount"));
        assert!(contains(&pdf, b"(EUR 49.00)"));
    }

    #[test]
    fn pdf_truncates_a_long_title() {
        let title = "Rust for Backend Developers: Async, Axum, SQLx and Observability in Production Systems";
        let receipt = Receipt { course_title: title.to_owned(), ..sample() };
        let pdf = render_pdf(&receipt);
        let expected = format!("{}...", title.chars().take(MAX_TITLE_CHARS - 3).collect::<String>().trim_end());
        assert_eq!(expected.chars().count(), MAX_TITLE_CHARS);
        assert!(contains(&pdf, format!("({expected})").as_bytes()), "missing {expected}");
        assert!(!contains(&pdf, title.as_bytes()));
    }

    #[test]
    fn pdf_encodes_euro_and_accents() {
        let title =
            "Caf\u{e9} cr\u{e8}me \u{2013} pricing in \u{20ac} \u{2014} \u{201c}d\u{e9}j\u{e0} vu\u{201d} \u{65e5}";
        let receipt =
            Receipt { course_title: title.to_owned(), buyer_name: "Ren\u{e9}e M\u{fc}ller".to_owned(), ..sample() };
        let pdf = render_pdf(&receipt);
        let encoded = win_ansi(title);
        assert!(encoded.contains(&0x80) && encoded.contains(&0xe9) && encoded.ends_with(b"?"));
        // pdf-writer writes strings with non-ASCII bytes as hex strings: <...E9...80...>.
        assert!(contains(&pdf, &hex_string(title)));
        assert!(contains(&pdf, &hex_string("Ren\u{e9}e M\u{fc}ller")));
    }

    /// Writes a sample receipt to `$RECEIPT_PDF` (e.g. for `pdftotext`); does nothing when it is unset.
    #[test]
    fn writes_sample_when_asked() {
        if let Some(path) = std::env::var_os("RECEIPT_PDF") {
            let receipt = Receipt {
                course_title:
                    "Caf\u{e9} cr\u{e8}me \u{2013} pricing in \u{20ac}: a very long course title that needs truncating"
                        .to_owned(),
                refunded_minor: 1500,
                ..sample()
            };
            std::fs::write(path, render_pdf(&receipt)).unwrap();
        }
    }
}

//! Spans the workers open, recorded for tests that check what an operator would see in traces:
//! [`layer`] is installed by the e2e binary; [`find`] looks for a span by name and fields.

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;

/// One recorded span: its name and fields as text.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub name: &'static str,
    pub fields: HashMap<&'static str, String>,
}

static SEEN: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

/// The spans recorded: those of the consumer engine (`consume`) and the micro-service endpoints
/// (`rpc`), whatever the log filter.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    Capture.with_filter(
        Targets::new()
            .with_target("coursebus_bus::consume", Level::INFO)
            .with_target("coursebus_bus::service", Level::INFO),
    )
}

/// The first recorded span named `name` whose fields satisfy `matches`.
pub fn find(name: &str, matches: impl Fn(&HashMap<&'static str, String>) -> bool) -> Option<Recorded> {
    let seen = SEEN.lock().ok()?;
    seen.iter().find(|r| r.name == name && matches(&r.fields)).cloned()
}

struct Capture;

impl<S: Subscriber> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let name = attrs.metadata().name();
        if name != "consume" && name != "rpc" {
            return;
        }
        let mut fields = Fields(HashMap::new());
        attrs.record(&mut fields);
        if let Ok(mut seen) = SEEN.lock() {
            seen.push(Recorded { name, fields: fields.0 });
        }
    }
}

struct Fields(HashMap<&'static str, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

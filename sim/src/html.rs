//! A self-contained HTML timeline of a history: one lane per client, one bar per
//! operation from its call to its completion, violating operations marked. No
//! scripts or styles are fetched from anywhere: the file stands alone.

use core::fmt::Write as _;
use std::collections::{BTreeMap, BTreeSet};

use crate::history::{EventKind, History};

const LANE_HEIGHT_PX: u64 = 26;
const WIDTH_PX: u64 = 1400;

struct Bar {
    client: u64,
    id: u64,
    start: u64,
    end: Option<u64>,
    kind: EventKind,
    label: String,
    details: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders `history` as an HTML page; operations in `violating` are outlined in red.
pub fn timeline(title: &str, history: &History, violating: &BTreeSet<u64>) -> String {
    let mut bars: BTreeMap<u64, Bar> = BTreeMap::new();
    let mut end_of_time = 1u64;
    for (position, event) in history.events.iter().enumerate() {
        // Histories without times are laid out by line order.
        let time = event.time.unwrap_or(position as u64);
        end_of_time = end_of_time.max(time);
        if event.kind == EventKind::Call {
            let function = event.function.clone().unwrap_or_default();
            let input = event.input.as_ref().map_or(String::new(), ToString::to_string);
            bars.insert(
                event.id,
                Bar {
                    client: event.client,
                    id: event.id,
                    start: time,
                    end: None,
                    kind: EventKind::Info,
                    label: function.clone(),
                    details: format!("#{} {function} {input}", event.id),
                },
            );
        } else if let Some(bar) = bars.get_mut(&event.id) {
            bar.end = Some(time);
            bar.kind = event.kind;
            let output = event.output.as_ref().map_or(String::new(), ToString::to_string);
            let _ = write!(bar.details, " -> {:?} {output}", event.kind);
        }
    }
    let clients: BTreeSet<u64> = bars.values().map(|bar| bar.client).collect();
    let lane_of: BTreeMap<u64, u64> = clients.iter().enumerate().map(|(lane, client)| (*client, lane as u64)).collect();
    let scale = |time: u64| time.saturating_mul(WIDTH_PX) / end_of_time.max(1);
    let height = (clients.len() as u64 + 1) * LANE_HEIGHT_PX;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\n\
         body{{font:13px sans-serif;margin:16px}}\n\
         .timeline{{position:relative;width:{width}px;height:{height}px;border-left:1px solid #999;margin-left:80px}}\n\
         .lane{{position:absolute;left:-80px;width:76px;text-align:right;color:#555}}\n\
         .bar{{position:absolute;height:{bar}px;border-radius:3px;font-size:10px;overflow:hidden;white-space:nowrap;\
         box-sizing:border-box;padding-left:2px}}\n\
         .ok{{background:#8fd19e}} .fail{{background:#ccc}} .info{{background:repeating-linear-gradient(45deg,#f5c26b,#f5c26b 4px,#fbe3b8 4px,#fbe3b8 8px)}}\n\
         .violating{{border:2px solid #d00;background-color:#f99}}\n\
         </style></head><body>\n<h1>{title}</h1>\n<p>{count} operations; green: answered, grey: failed (no effect), \
         striped: unknown outcome; red outline: in the shortest failing history. Hover a bar for its input and output.</p>\n\
         <div class=\"timeline\">\n",
        title = escape(title),
        width = WIDTH_PX,
        height = height,
        bar = LANE_HEIGHT_PX - 6,
        count = bars.len(),
    );
    for (client, lane) in &lane_of {
        let _ =
            writeln!(html, "<div class=\"lane\" style=\"top:{}px\">client {client}</div>", lane * LANE_HEIGHT_PX + 4);
    }
    for bar in bars.values() {
        let left = scale(bar.start);
        let right = scale(bar.end.unwrap_or(end_of_time)).max(left + 3);
        let class = match bar.kind {
            EventKind::Ok => "ok",
            EventKind::Fail => "fail",
            EventKind::Call | EventKind::Info => "info",
        };
        let marked = if violating.contains(&bar.id) { " violating" } else { "" };
        let _ = writeln!(
            html,
            "<div class=\"bar {class}{marked}\" style=\"left:{left}px;width:{}px;top:{}px\" title=\"{}\">{}</div>",
            right - left,
            lane_of[&bar.client] * LANE_HEIGHT_PX + 3,
            escape(&bar.details),
            escape(&bar.label),
        );
    }
    html.push_str("</div>\n</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, Header, ModelName};

    #[test]
    fn the_page_is_self_contained_and_marks_violations() {
        let mut history = History::new(Header::new(ModelName::Notes));
        history.events.push(Event::call(0, 0, "get", Some(serde_json::json!({"id": 1}))).at(1));
        history.events.push(Event::ok(0, 0, Some(serde_json::json!({"error": {"code": "not_found"}}))).at(5));
        let page = timeline("seed <1>", &history, &BTreeSet::from([0]));
        assert!(page.contains("bar ok violating"));
        assert!(page.contains("seed &lt;1&gt;"));
        assert!(!page.contains("http"), "no external resources");
    }
}

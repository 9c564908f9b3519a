//! An upstream's SSE answer, cut into chunks at places the input chooses (its first bytes),
//! as the gateway reads it: bounded, event by event.
#![no_main]

use futures::StreamExt;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cuts % 16) + 1;
    let chunks: Vec<Result<bytes::Bytes, String>> = rest
        .chunks(step)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let events = switchboard_upstream::json_events(futures::stream::iter(chunks));
    futures::executor::block_on(events.for_each(|event| async move {
        if let Ok(e) = event {
            let _ = serde_json::from_str::<serde_json::Value>(&e.data);
        }
    }));
});

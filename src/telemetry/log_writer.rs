//! Log lines written to stderr in batches. Under load `serve` logs one line per admission
//! review; handing each line to a writer thread (as `tracing_appender::non_blocking` does) costs a
//! wake-up, a spin and a `write` per line, more than the review itself. Here a line is appended
//! to a shared buffer under a short lock, and one thread writes whatever has gathered, at most
//! [`FLUSH_INTERVAL`] later: one `write` for hundreds of lines.
//!
//! Nothing is dropped: when the writer falls [`MAX_PENDING`] bytes behind (stderr blocked), the
//! threads that log wait for it. [`FlushGuard`] writes the rest when it is dropped at exit.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait in the buffer before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// A buffer this full is written at once rather than at the interval.
const WRITE_SOON: usize = 64 * 1024;
/// A buffer this full makes the threads that log wait for the writer.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: lines arrived in an empty buffer, the buffer is filling, or closing.
    wake_writer: Condvar,
    /// Wakes threads waiting for room.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A thread that panicked while appending left at worst a partial line: keep logging.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `MakeWriter` for `tracing_subscriber`: each event's formatted line is one `write`.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread after it has written every pending line.
pub struct FlushGuard {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// Starts the thread that writes batches to `out`.
pub fn batched(out: impl Write + Send + 'static) -> (BatchedWriter, FlushGuard) {
    let shared = Arc::new(Shared::default());
    let writer = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = shared.clone();
            move || write_batches(&shared, out)
        })
        .expect("spawning the log writer thread");
    (
        BatchedWriter {
            shared: shared.clone(),
        },
        FlushGuard {
            shared,
            writer: Some(writer),
        },
    )
}

fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.lines.is_empty() && !pending.closed {
            pending = shared
                .wake_writer
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        if pending.lines.is_empty() {
            return; // closed, and everything written
        }
        if !pending.closed && pending.lines.len() < WRITE_SOON {
            // Let the lines of the next few milliseconds join this write.
            pending = shared
                .wake_writer
                .wait_timeout(pending, FLUSH_INTERVAL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::swap(&mut pending.lines, &mut batch);
        drop(pending);
        shared.room.notify_all();
        // Nowhere to report a failed write of the log itself; the lines are lost, not retried.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
    }
}

impl std::io::Write for BatchedWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        while pending.lines.len() >= MAX_PENDING && !pending.closed {
            pending = self
                .shared
                .room
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        let before = pending.lines.len();
        pending.lines.extend_from_slice(line);
        // Only the first line of a batch wakes the writer (it then gathers the others), and the
        // line that makes the buffer large enough to write at once.
        if before == 0 || (before < WRITE_SOON && pending.lines.len() >= WRITE_SOON) {
            self.shared.wake_writer.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake_writer.notify_one();
        self.shared.room.notify_all();
        // A stderr that stays blocked must not keep the process from exiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while self.writer.as_ref().is_some_and(|w| !w.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(writer) = self.writer.take().filter(JoinHandle::is_finished) {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that records each `write_all` as one batch.
    #[derive(Clone, Default)]
    struct Batches(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Batches {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_once_in_order_and_lines_share_writes() {
        let out = Batches::default();
        let (writer, guard) = batched(out.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        writer.write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let batches = out.0.lock().unwrap();
        let text = String::from_utf8(batches.concat()).unwrap();
        assert_eq!(text.lines().count(), 8000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..2000).collect::<Vec<_>>(), "thread {t}");
        }
        assert!(
            batches.len() < 8000 / 10,
            "{} writes for 8000 lines",
            batches.len()
        );
    }

    #[test]
    fn a_lone_line_is_written_within_the_interval() {
        let out = Batches::default();
        let (mut writer, _guard) = batched(out.clone());
        writer.write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + FLUSH_INTERVAL * 50;
        while out.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.0.lock().unwrap().concat(), b"one\n");
    }

    /// A `Write` that blocks until released, like a stderr pipe nobody reads.
    #[derive(Clone)]
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Batches);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (released, cv) = &*self.0;
            let mut released = released.lock().unwrap();
            while !*released {
                released = cv.wait(released).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_stderr_holds_back_the_loggers_without_losing_lines() {
        let stuck = Stuck(Default::default(), Batches::default());
        let (writer, guard) = batched(stuck.clone());
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>();
        let logger = std::thread::spawn({
            let mut writer = writer.clone();
            let line = line.clone();
            move || {
                for _ in 0..(3 * MAX_PENDING / line.len()) {
                    writer.write_all(&line).unwrap();
                }
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!logger.is_finished(), "the logger waits for room");
        assert!(writer.shared.lock().lines.len() <= MAX_PENDING + line.len());
        *stuck.0 .0.lock().unwrap() = true;
        stuck.0 .1.notify_all();
        logger.join().unwrap();
        drop(guard);
        let written: usize = stuck.1 .0.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(written, 3 * MAX_PENDING / line.len() * line.len());
    }
}

//! Lingering close (RFC 9112, 9.6): a client that sends a large body without
//! waiting for `100 Continue` is still writing when an early error (413, 400, 415)
//! is answered. Closing the socket then would make the kernel reset the connection
//! and discard the answer before the client reads it. So when the server is done
//! with a connection, it half-closes it (the client sees the end of the answer),
//! then reads and discards what the client still sends, without keeping it, until
//! the client closes, [`LINGER_BYTES_MAX`] bytes have come, or [`LINGER_TIME_MAX`]
//! has passed; only then is the socket closed. A client that streams forever holds
//! the connection for that long at most.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Most bytes discarded after the server is done with a connection.
pub const LINGER_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Longest a finished connection is kept open to discard what the client sends.
pub const LINGER_TIME_MAX: Duration = Duration::from_secs(10);
/// Bytes read at a time while discarding.
const DISCARD_CHUNK_BYTES: usize = 16 * 1024;

/// A client connection that lingers when dropped (see the module documentation).
#[derive(Debug)]
pub struct LingeringStream {
    stream: Option<TcpStream>,
}

impl LingeringStream {
    pub fn new(stream: TcpStream) -> LingeringStream {
        LingeringStream { stream: Some(stream) }
    }

    fn stream(self: Pin<&mut Self>) -> Pin<&mut TcpStream> {
        Pin::new(self.get_mut().stream.as_mut().expect("the stream is only taken when dropped"))
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_read(context, buffer)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        self.stream().poll_write(context, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(context)
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else { return };
        // Without a runtime (the process is ending) the socket just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

/// Half-closes `stream`, then discards what arrives within the bounds, then closes it.
pub async fn linger(mut stream: TcpStream) -> u64 {
    let _ = stream.shutdown().await;
    let mut discarded = 0u64;
    let mut chunk = vec![0u8; DISCARD_CHUNK_BYTES];
    let discarding = async {
        while discarded < LINGER_BYTES_MAX {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => discarded += read as u64,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME_MAX, discarding).await;
    discarded
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn an_answer_sent_early_is_read_after_the_whole_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let body_bytes = 4 * 1024 * 1024;
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(&vec![b'x'; body_bytes]).await.expect("the server discards the body, never resets");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"refused").await.unwrap();
        let discarded = linger(stream).await;
        assert_eq!(client.await.unwrap(), "refused");
        assert_eq!(discarded, body_bytes as u64);
    }
}

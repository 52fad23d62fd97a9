//! Framing on agent-to-agent TLS streams: a 4-byte big-endian length, then that many bytes.
//! A length above the limit is refused before anything is allocated for it.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Chitchat keeps a message under 65,507 bytes (its UDP payload limit); the hello is smaller.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub fn encode(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(payload.len()));
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

pub async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(err) => return Err(err.into()),
    }
    let length = u32::from_be_bytes(header) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(length));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    Ok(payload)
}

pub async fn write_frame(writer: &mut (impl AsyncWrite + Unpin), payload: &[u8]) -> Result<(), FrameError> {
    writer.write_all(&encode(payload)?).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[tokio::test]
    async fn frames_in_order_then_closed_and_oversized_refused_from_the_header() {
        let mut bytes = encode(b"hello").unwrap();
        bytes.extend(encode(b"").unwrap());
        let mut reader = &bytes[..];
        assert_eq!(read_frame(&mut reader).await.unwrap(), b"hello");
        assert_eq!(read_frame(&mut reader).await.unwrap(), b"");
        assert!(matches!(read_frame(&mut reader).await, Err(FrameError::Closed)));
        let mut oversized = &u32::MAX.to_be_bytes()[..];
        assert!(matches!(read_frame(&mut oversized).await, Err(FrameError::TooLarge(_))));
        assert!(encode(&vec![0; MAX_FRAME_BYTES + 1]).is_err());
    }

    proptest! {
        /// Frames written in arbitrary chunks through a pipe come out whole and in order.
        #[test]
        fn frames_survive_any_chunking(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
                                       cut in 1usize..64) {
            let stream: Vec<u8> = payloads.iter().flat_map(|payload| encode(payload).unwrap()).collect();
            let decoded = block_on(async {
                let (mut writer, mut reader) = tokio::io::duplex(64);
                let writing = tokio::spawn(async move {
                    for chunk in stream.chunks(cut) {
                        writer.write_all(chunk).await.unwrap();
                    }
                });
                let mut decoded = Vec::new();
                loop {
                    match read_frame(&mut reader).await {
                        Ok(frame) => decoded.push(frame),
                        Err(FrameError::Closed) => break,
                        Err(other) => panic!("{other}"),
                    }
                }
                writing.await.unwrap();
                decoded
            });
            prop_assert_eq!(decoded, payloads);
        }

        /// Garbage never panics and never yields a frame over the limit: reading stops at an
        /// oversized length, a short read, or the end.
        #[test]
        fn garbage_is_refused_within_bounds(garbage in prop::collection::vec(any::<u8>(), 0..2000)) {
            block_on(async {
                let mut reader = &garbage[..];
                for _ in 0..=garbage.len() {
                    match read_frame(&mut reader).await {
                        Ok(frame) => assert!(frame.len() <= MAX_FRAME_BYTES),
                        Err(FrameError::TooLarge(length)) => { assert!(length > MAX_FRAME_BYTES); break; }
                        Err(_) => break,
                    }
                }
            });
        }
    }
}

//! Stateless session tickets whose keys every node of a fleet shares: a client resumed by one node
//! resumes on any other behind the balancer. Keys come from files (newest first): the first
//! issues, every one decrypts, so a rotation adds a file at the front and drops the oldest later,
//! as with the signing keys.
//!
//! A ticket is `id ‖ nonce ‖ AES-256-GCM(state)`, the 4-byte id (from the key) bound in as
//! associated data. The AES key is SHA-256 of the key file's bytes, so any secret of at least 16
//! bytes serves; the nonce is random per ticket.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// How long a client may keep a ticket (a hint to it; rotation of the files is what ends it).
const LIFETIME_SECS: u32 = 12 * 3600;
const ID_LEN: usize = 4;

/// One ticket key.
struct TicketKey {
    id: [u8; ID_LEN],
    aead: LessSafeKey,
}

impl TicketKey {
    fn from_secret(secret: &[u8]) -> TicketKey {
        let key = Sha256::digest(secret);
        let mut tagged = Sha256::new();
        tagged.update(b"sendfiled ticket key id\0");
        tagged.update(secret);
        let tag = tagged.finalize();
        let mut id = [0; ID_LEN];
        id.copy_from_slice(&tag[..ID_LEN]);
        let unbound = UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte AES-256 key");
        TicketKey {
            id,
            aead: LessSafeKey::new(unbound),
        }
    }
}

/// The fleet's ticket keys, as rustls's ticket producer.
pub struct SharedTickets {
    keys: Vec<TicketKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for SharedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedTickets({} keys)", self.keys.len())
    }
}

impl SharedTickets {
    /// Read every key file; an error names the file.
    pub fn load(files: &[std::path::PathBuf]) -> Result<SharedTickets, String> {
        let keys = files
            .iter()
            .map(|f| read_key(f).map(|s| TicketKey::from_secret(&s)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SharedTickets::from_keys(keys))
    }

    fn from_keys(keys: Vec<TicketKey>) -> SharedTickets {
        SharedTickets {
            keys,
            random: SystemRandom::new(),
        }
    }
}

fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    crate::bounded_read::read_key_file(path)
}

impl rustls::server::ProducesTickets for SharedTickets {
    fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.id),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let (id, rest) = cipher.split_at_checked(ID_LEN)?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(key.id), &mut buf)
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    fn tickets(secrets: &[&[u8]]) -> SharedTickets {
        SharedTickets::from_keys(secrets.iter().map(|s| TicketKey::from_secret(s)).collect())
    }

    #[test]
    fn the_newest_key_issues_and_every_key_decrypts() {
        let old = tickets(&[b"old secret, sixteen+"]);
        let rotated = tickets(&[b"new secret, sixteen+", b"old secret, sixteen+"]);
        let issued_by_old = old.encrypt(b"session state").unwrap();
        assert_eq!(rotated.decrypt(&issued_by_old).unwrap(), b"session state");
        let issued_by_new = rotated.encrypt(b"state 2").unwrap();
        assert!(old.decrypt(&issued_by_new).is_none());
        assert_eq!(rotated.decrypt(&issued_by_new).unwrap(), b"state 2");
    }

    #[test]
    fn tampered_short_and_foreign_tickets_are_refused() {
        let t = tickets(&[b"a secret of enough bytes"]);
        let mut ticket = t.encrypt(b"state").unwrap();
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert!(t.decrypt(&ticket).is_none());
        assert!(t.decrypt(&[]).is_none());
        assert!(t.decrypt(&[0; 10]).is_none());
        let other = tickets(&[b"another secret, long enough"]);
        assert!(other.decrypt(&t.encrypt(b"state").unwrap()).is_none());
    }
}

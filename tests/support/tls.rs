//! Test PKI made with the `openssl` CLI in a temporary directory: a CA, a server certificate for
//! `127.0.0.1` (SAN `IP:127.0.0.1`) and a client certificate. ECDSA P-256 keys in PKCS#8 PEM:
//! accepted by etcd 3.4 (Go crypto/tls) and by etcd-client's rustls (ring) alike. X.509 v3 with
//! the extensions webpki insists on (CA:TRUE only on the CA, EKU on the leaves).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The generated files (removed with `dir`).
pub struct Certs {
    /// Where the files are.
    pub dir: tempfile::TempDir,
    /// CA certificate.
    pub ca: PathBuf,
    /// Server certificate (SAN IP:127.0.0.1, EKU serverAuth + clientAuth: etcd's own gRPC
    /// gateway dials itself with it when client certificates are required).
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate (EKU clientAuth, CN `clusterrebootd`).
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        o.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Makes a key and a certificate signed by the CA in `dir` (`ca.pem`, `ca.key`).
fn leaf(dir: &Path, name: &str, cn: &str, serial: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).expect("ext file");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

impl Certs {
    /// Generates everything (~50 ms) and checks that both leaves verify against the CA.
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-sha256",
                "-subj",
                "/CN=clusterrebootd test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        leaf(
            d,
            "server",
            "etcd-test-server",
            "2",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n",
        );
        leaf(
            d,
            "client",
            "clusterrebootd",
            "3",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        );
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "ca.pem",
                "-purpose",
                "sslserver",
                "server.pem",
            ],
        );
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "ca.pem",
                "-purpose",
                "sslclient",
                "client.pem",
            ],
        );
        Certs {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            dir,
        }
    }
}

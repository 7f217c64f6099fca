//! METEOR 1.5 through its Java implementation, the way pycocoevalcap's `Meteor` runs it.
//!
//! METEOR needs the jar's normaliser, stemmer, WordNet synonyms, paraphrase table and aligner, so
//! it is not re-implemented: the jar is run as `java -Xmx2G -jar meteor-1.5.jar - - -stdio -l en
//! -norm`, one `SCORE ||| ref … ||| hyp` line per item (its statistics line read back), then one
//! `EVAL ||| stats …` line, answered by the item scores and the corpus score (the jar's aggregate
//! over summed statistics, not a mean of item scores). Without Java or the jar the score is
//! absent and [`Meteor::unavailable`] says why; no number is made up.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use super::Caption;

/// Environment variable naming the METEOR 1.5 jar (its `data/paraphrase-en.gz` must sit next to it).
pub const METEOR_JAR_ENV: &str = "LOC3R_METEOR_JAR";

/// The reason given when the jar is not configured.
pub const NOT_CONFIGURED: &str = "METEOR needs Java and meteor-1.5.jar (LOC3R_METEOR_JAR)";

/// A METEOR result: the scores, or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meteor {
    /// Corpus METEOR in [0, 1], or `None`.
    pub corpus: Option<f64>,
    /// Per-item scores (empty when unavailable).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_item: Vec<f64>,
    /// Why the score is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl Meteor {
    fn missing(reason: impl Into<String>) -> Meteor {
        Meteor { corpus: None, per_item: Vec::new(), unavailable: Some(reason.into()) }
    }
}

/// The jar named by [`METEOR_JAR_ENV`], if set.
pub fn jar_from_env() -> Option<PathBuf> {
    std::env::var_os(METEOR_JAR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// METEOR of `corpus` with the jar at `jar`, or the reason it cannot be computed.
pub fn meteor(corpus: &[Caption], jar: Option<&Path>) -> Meteor {
    let Some(jar) = jar else { return Meteor::missing(NOT_CONFIGURED) };
    if !jar.is_file() {
        return Meteor::missing(format!("{NOT_CONFIGURED}: {} is not a file", jar.display()));
    }
    if corpus.is_empty() {
        return Meteor::missing("nothing to score");
    }
    match run_jar(corpus, jar) {
        Ok((per_item, corpus)) => Meteor { corpus: Some(corpus), per_item, unavailable: None },
        Err(reason) => Meteor::missing(format!("METEOR failed: {reason}")),
    }
}

/// One line of the jar's protocol: `|||` separates fields, so it may not appear inside one, and
/// a newline would end the line.
fn field(s: &str) -> String {
    s.replace("|||", "").replace(['\n', '\r'], " ")
}

fn run_jar(corpus: &[Caption], jar: &Path) -> Result<(Vec<f64>, f64), String> {
    let mut child = Command::new("java")
        .args(["-jar", "-Xmx2G"])
        .arg(jar)
        .args(["-", "-", "-stdio", "-l", "en", "-norm"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start java ({e}); install a Java runtime (8 or newer)"))?;
    let result = (|| {
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut read_line = || -> Result<String, String> {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) => Err("the jar closed its output (is this meteor-1.5.jar, with data/paraphrase-en.gz beside it?)".to_string()),
                Ok(_) => Ok(line.trim().to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        let mut eval_line = String::from("EVAL");
        for caption in corpus {
            // As the pycocoevalcap wrapper: the hypothesis also loses double spaces.
            let hypothesis = field(&caption.hypothesis).replace("  ", " ");
            let references: Vec<String> = caption.references.iter().map(|r| field(r)).collect();
            writeln!(stdin, "SCORE ||| {} ||| {}", references.join(" ||| "), hypothesis).map_err(|e| e.to_string())?;
            stdin.flush().map_err(|e| e.to_string())?;
            eval_line.push_str(" ||| ");
            eval_line.push_str(&read_line()?);
        }
        writeln!(stdin, "{eval_line}").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())?;
        let parse = |s: String| s.parse::<f64>().map_err(|_| format!("unexpected jar output {s:?}"));
        let per_item = (0..corpus.len()).map(|_| read_line().and_then(parse)).collect::<Result<Vec<f64>, String>>()?;
        let total = parse(read_line()?)?;
        Ok((per_item, total))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_jar_gives_a_reason_not_a_number() {
        let corpus = [Caption { hypothesis: "a".into(), references: vec!["a".into()] }];
        let m = meteor(&corpus, None);
        assert_eq!(m.corpus, None);
        assert_eq!(m.unavailable.as_deref(), Some(NOT_CONFIGURED));
        let m = meteor(&corpus, Some(Path::new("/nonexistent/meteor-1.5.jar")));
        assert_eq!(m.corpus, None);
        assert!(m.unavailable.unwrap().contains("not a file"));
    }
}

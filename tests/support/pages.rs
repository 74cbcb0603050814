//! A plain HTTP client for the web pages' tests: answers with their status,
//! headers and body, redirects shown rather than followed, cookies sent by
//! hand, and the page's CSRF token read from its form.

/// A client that shows redirects instead of following them, and errors as answers.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// A response's status, headers and body.
pub struct Answer {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

impl Answer {
    /// Every value of header `name`, one per line.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The value a `Set-Cookie` sets for `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .map(|rest| rest.split(';').next().unwrap().to_owned())
    }
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.unwrap();
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// GET `url`, with a `Cookie` header when given.
pub fn get(url: &str, cookie: Option<&str>) -> Answer {
    let mut req = client().get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    answer(req.call())
}

/// POST a form to `url`, with a `Cookie` header when given.
pub fn post(url: &str, cookie: Option<&str>, form: &str) -> Answer {
    let mut req = client()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    answer(req.send(form))
}

/// The value of the page's first hidden `csrf` field.
pub fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

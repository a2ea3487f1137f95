-- wrk script: the flash POST-redirect-GET round with one fixed session cookie.
-- Arguments: the CSRF token and the Cookie header value of a prepared session.
local token, cookie, redirected_cookie
local step = 0

function init(args)
  token, cookie = args[1], args[2]
end

function request()
  step = step + 1
  if step % 2 == 1 then
    local headers = { ["Cookie"] = cookie, ["Content-Type"] = "application/x-www-form-urlencoded" }
    return wrk.format("POST", "/flash", headers, "csrf_token=" .. token .. "&category=info&message=hello")
  end
  return wrk.format("GET", "/", { ["Cookie"] = redirected_cookie or cookie })
end

function response(status, headers, body)
  local set_cookie = headers["Set-Cookie"]
  if status == 303 and set_cookie then
    redirected_cookie = set_cookie:match("^(session=[^;]+)")
  end
end

<?php
/*
 * A minimal Laravel 8 app standing for the identifAI override API: the genuine ThrottleRequests
 * middleware, keyed per API key, on a Redis cache store. Front controller for `php -S`:
 *
 *   OVERRIDE_LIMIT=20 OVERRIDE_DECAY_MINUTES=0.25 OVERRIDE_API_KEY=... REDIS_PORT=6379 \
 *   PHP_CLI_SERVER_WORKERS=4 php -S 127.0.0.1:8000 server.php
 *
 * Laravel comes from Debian's php-laravel-framework (its autoloaders under /usr/share/php): no
 * composer. Only what the throttle needs is built: config, cache + redis, the router, the
 * exception handler that renders a 429 as JSON when the request accepts JSON.
 *
 * Why Redis: the file store's increment is not atomic across php -S workers (a limit of 50 let 55
 * through), and production deployments use an atomic store.
 */

declare(strict_types=1);

require_once 'Illuminate/autoload.php';

use Illuminate\Auth\GenericUser;
use Illuminate\Cache\CacheServiceProvider;
use Illuminate\Config\Repository;
use Illuminate\Foundation\Application;
use Illuminate\Foundation\Exceptions\Handler;
use Illuminate\Foundation\Http\Kernel;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;
use Illuminate\Redis\RedisServiceProvider;
use Illuminate\Routing\Middleware\ThrottleRequests;

date_default_timezone_set('UTC');

final class ApiKeyAuth
{
    /** Authenticates before the throttle, so the throttle keys by the key's user and 401s never count. */
    public function handle(Request $request, Closure $next)
    {
        $key = (string) $request->header('X-Api-Key', '');
        if ($key === '' || !hash_equals((string) getenv('OVERRIDE_API_KEY'), $key)) {
            return new JsonResponse(['error' => 'Unauthorized'], 401);
        }
        $user = new GenericUser(['id' => hash('sha256', $key)]);
        $request->setUserResolver(static fn () => $user);
        return $next($request);
    }
}

final class RequestLog
{
    /*
     * Outermost: appends "arrival-time status remaining timer" per request to $OVERRIDE_LOG (if
     * set), so a test can rebuild the throttle's windows, which Laravel keeps no history of.
     * `timer` is the window's whole-second timer in the store (floor(first hit + decay)): one per
     * window. X-RateLimit-Remaining cannot tell windows apart: Laravel reads it back after the
     * hit, so concurrent workers report duplicates.
     */
    public function __construct(private \Illuminate\Contracts\Cache\Repository $cache)
    {
    }

    public function handle(Request $request, Closure $next)
    {
        $arrived = microtime(true);
        $response = $next($request);
        $path = getenv('OVERRIDE_LOG');
        if ($path) {
            $user = $request->user();
            // The key ThrottleRequests uses for an authenticated user, and RateLimiter's suffix.
            $timer = $user ? $this->cache->get(sha1((string) $user->getAuthIdentifier()) . ':timer') : null;
            $remaining = $response->headers->get('X-RateLimit-Remaining', '-');
            $line = sprintf("%.6f %d %s %s\n", $arrived, $response->getStatusCode(), $remaining, $timer ?? '-');
            file_put_contents($path, $line, FILE_APPEND | LOCK_EX);
        }
        return $response;
    }
}

final class JsonErrors extends Handler
{
    /*
     * Laravel answers a client that does not send Accept: application/json with its HTML error
     * page (~6.6 KB, the same status and headers); rendering it needs the view stack, which this
     * app leaves out. JSON for everyone keeps the status and every header the throttle sets.
     */
    protected function shouldReturnJson($request, Throwable $e)
    {
        return true;
    }
}

final class OverrideKernel extends Kernel
{
    // Config is built in code and providers registered by hand below: nothing to load or cache.
    protected $bootstrappers = [\Illuminate\Foundation\Bootstrap\BootProviders::class];
}

$app = new Application(__DIR__);
// Laravel writes its logs (and nothing else here) under storage/: keep them out of the checkout.
if (getenv('OVERRIDE_STORAGE')) {
    $app->useStoragePath((string) getenv('OVERRIDE_STORAGE'));
}
$app->instance('config', new Repository([
    'app' => ['debug' => false, 'env' => 'production'],
    'cache' => [
        'default' => 'redis',
        'prefix' => 'override',
        'stores' => ['redis' => ['driver' => 'redis', 'connection' => 'default']],
    ],
    'database' => ['redis' => [
        'client' => 'phpredis',
        'default' => ['host' => '127.0.0.1', 'port' => (int) getenv('REDIS_PORT'), 'database' => 0],
    ]],
]));
$app->register(RedisServiceProvider::class);
$app->register(CacheServiceProvider::class);
$app->singleton(\Illuminate\Contracts\Debug\ExceptionHandler::class, JsonErrors::class);
$app->singleton(\Illuminate\Contracts\Http\Kernel::class, OverrideKernel::class);

$throttle = ThrottleRequests::class . ':' . (int) getenv('OVERRIDE_LIMIT') . ',' . getenv('OVERRIDE_DECAY_MINUTES');
$router = $app->make('router');
foreach (['image' => 'classification', 'video' => 'classification_video', 'audio' => 'classification_audio'] as $type => $prefix) {
    $router->post("/api/{$prefix}/{hash}/override", static function (Request $request, string $hash) use ($type) {
        $classification = $request->json('classification');
        if (!in_array($classification, ['human', 'artificial'], true)) {
            return new JsonResponse(['classification' => ['The selected classification is invalid.']], 400);
        }
        return new JsonResponse(['classification' => $classification, 'type' => $type, 'hash' => $hash], 201);
    })->middleware([RequestLog::class, ApiKeyAuth::class, $throttle]);
}

$kernel = $app->make(\Illuminate\Contracts\Http\Kernel::class);
$response = $kernel->handle($request = Request::capture());
$response->send();
$kernel->terminate($request, $response);
